// Package keystonetest is a fake Keystone for tests: an httptest server that
// answers GET /v3/auth/tokens the way Keystone does when a token validates
// itself, counts the calls per token, and can be made to fail, stall or hold
// requests.
package keystonetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Token is what the fake knows about one token.
type Token struct {
	ProjectID string // empty makes an unscoped token
	UserID    string
	Roles     []string
	ExpiresAt time.Time // zero means an hour after Add
	// ClaimValid answers 200 even once ExpiresAt has passed, like a
	// Keystone whose clock is behind ours.
	ClaimValid bool
}

// Server is the fake Keystone. Its URL is the www_authenticate_uri to use.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	tokens   map[string]Token
	calls    map[string]int
	total    int
	fail     int
	delay    time.Duration
	hold     chan struct{} // non-nil: requests wait until it is closed
	arrived  chan struct{} // one send per request that reached the handler
	now      func() time.Time
	lastPath string
}

// New starts a fake Keystone that t closes.
func New(t testing.TB) *Server {
	s := &Server{
		tokens:  map[string]Token{},
		calls:   map[string]int{},
		arrived: make(chan struct{}, 1024),
		now:     time.Now,
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Add makes token valid with the given identity.
func (s *Server) Add(token string, tok Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok.ExpiresAt.IsZero() {
		tok.ExpiresAt = s.now().Add(time.Hour)
	}
	s.tokens[token] = tok
}

// SetClock replaces time.Now for expiry checks.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// FailWith makes every answer the given status (0 restores normal answers).
func (s *Server) FailWith(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = status
}

// SetDelay makes every answer wait d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Hold makes requests wait until the returned release is called.
func (s *Server) Hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Arrived receives once per request that reached the fake.
func (s *Server) Arrived() <-chan struct{} { return s.arrived }

// Calls is how many validations of token the fake received.
func (s *Server) Calls(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[token]
}

// TotalCalls is how many requests the fake received.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// LastPath is the URL path of the last request.
func (s *Server) LastPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPath
}

func keystoneError(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "title": title, "message": msg}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	auth, subject := r.Header.Get("X-Auth-Token"), r.Header.Get("X-Subject-Token")
	s.mu.Lock()
	s.total++
	s.calls[subject]++
	s.lastPath = r.URL.Path
	fail, delay, hold, now := s.fail, s.delay, s.hold, s.now()
	authTok, authOK := s.tokens[auth]
	subTok, subOK := s.tokens[subject]
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}

	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/v3/auth/tokens") {
		keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
		return
	}
	if fail != 0 {
		keystoneError(w, fail, http.StatusText(fail), "fake failure")
		return
	}
	live := func(t Token) bool { return t.ClaimValid || now.Before(t.ExpiresAt) }
	if !authOK || !live(authTok) {
		keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	if !subOK || !live(subTok) {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token: "+subject)
		return
	}
	roles := make([]map[string]string, 0, len(subTok.Roles))
	for _, name := range subTok.Roles {
		roles = append(roles, map[string]string{"id": "role-" + name, "name": name})
	}
	domain := map[string]string{"id": "default", "name": "Default"}
	body := map[string]any{
		"methods":    []string{"password"},
		"expires_at": subTok.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"issued_at":  now.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"audit_ids":  []string{"fake-audit"},
		"user":       map[string]any{"id": subTok.UserID, "name": "user-" + subTok.UserID, "domain": domain},
		"roles":      roles,
	}
	if subTok.ProjectID != "" {
		body["project"] = map[string]any{"id": subTok.ProjectID, "name": "project-" + subTok.ProjectID, "domain": domain}
	}
	if _, ok := r.URL.Query()["nocatalog"]; !ok {
		body["catalog"] = []any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Subject-Token", subject)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": body})
}
