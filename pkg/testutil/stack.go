package testutil

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvRealStack switches the functional and CLI tiers from a private
// all-in-one server to the devstack stack (devstack/stack.sh): set it to 1.
const EnvRealStack = "QINLING_REAL_STACK"

// EnvStackDir names the stack's directory; devstack/settings' default when unset.
const EnvStackDir = "STACK_DIR"

// DefaultStackDir is devstack/settings' STACK_DIR.
const DefaultStackDir = "/opt/qinling-stack"

// RealStack reports whether tests run against the devstack stack.
func RealStack() bool { return os.Getenv(EnvRealStack) == "1" }

// Identity is who a request is sent as. On the real stack each is a Keystone
// user with a password-scoped token; on the all-in-one (auth off) every
// identity sends the token "notused" and is project "default", admin.
type Identity string

// The identities devstack/stack.sh creates.
const (
	// Anonymous sends no X-Auth-Token at all.
	Anonymous Identity = ""
	// Admin is user admin in project admin, role admin.
	Admin Identity = "admin"
	// Demo is user demo in project demo, role member.
	Demo Identity = "demo"
	// AltDemo is user alt_demo in project alt_demo, role member.
	AltDemo Identity = "alt_demo"
)

// Token is a Keystone token and what it says about its holder.
type Token struct {
	ID        string
	ProjectID string
	UserID    string
	Roles     []string
	ExpiresAt time.Time
}

// Stack is a running devstack stack, described by the STACK_DIR/stack.env
// that devstack/stack.sh wrote.
type Stack struct {
	Dir         string            // STACK_DIR
	Env         map[string]string // stack.env
	URL         string            // qinling-api, no trailing slash
	KeystoneURL string            // Keystone v3, no trailing slash
	Engines     int               // QINLING_ENGINES

	mu     sync.Mutex
	tokens map[Identity]*Token
}

var keystoneClient = &http.Client{Timeout: time.Minute}

// LoadStack reads $STACK_DIR/stack.env and checks that the stack's API
// answers; the error says how to bring the stack up.
func LoadStack() (*Stack, error) {
	dir := stackDirFromEnv()
	envPath := filepath.Join(dir, "stack.env")
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return nil, fmt.Errorf("testutil: no devstack stack in %s (%v): run devstack/stack.sh (./tox -e devstack) first, or set %s", dir, err, EnvStackDir)
	}
	s := &Stack{Dir: dir, Env: env, tokens: map[Identity]*Token{}}
	s.URL = strings.TrimRight(env["QINLING_URL"], "/")
	s.KeystoneURL = strings.TrimRight(env["KEYSTONE_URL"], "/")
	if s.URL == "" || s.KeystoneURL == "" {
		return nil, fmt.Errorf("testutil: %s lacks QINLING_URL or KEYSTONE_URL", envPath)
	}
	if s.Engines, err = strconv.Atoi(env["QINLING_ENGINES"]); err != nil {
		return nil, fmt.Errorf("testutil: %s: QINLING_ENGINES: %v", envPath, err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.URL + "/")
	if err != nil {
		return nil, fmt.Errorf("testutil: the stack's qinling-api does not answer (%v): run devstack/stack.sh", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("testutil: GET %s/ answered %d, want 200", s.URL, resp.StatusCode)
	}
	return s, nil
}

// Enabled reports whether the stack runs service (ENABLED_SERVICES in
// stack.env). Settings such as SWIFT_URL are written whatever runs.
func (s *Stack) Enabled(service string) bool {
	return slices.Contains(strings.Fields(s.Env["ENABLED_SERVICES"]), service)
}

// SkipUnlessObjectStorage skips t unless the stack described by env (its
// stack.env) keeps packages in an object store, and returns which one:
// swift or s3 (QINLING_STORAGE; devstack/settings).
func SkipUnlessObjectStorage(t testing.TB, env map[string]string) string {
	t.Helper()
	storage := env["QINLING_STORAGE"]
	if storage != "swift" && storage != "s3" {
		t.Skipf("QINLING_STORAGE=%q: packages are in a directory the API and engines share; run the stack with QINLING_STORAGE=swift or s3", storage)
	}
	return storage
}

// ReadEnvFile parses KEY=VALUE lines (# comments, optional double quotes).
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "export ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env, sc.Err()
}

// PythonImage is the image of a Python runtime on the stack's orchestrator:
// the locally built runtime image on a Kubernetes stack, else "python3".
func (s *Stack) PythonImage() string {
	if s.Env["QINLING_ORCHESTRATOR"] == "kubernetes" && s.Env["K8S_PYTHON_IMAGE"] != "" {
		return s.Env["K8S_PYTHON_IMAGE"]
	}
	return "python3"
}

// Credentials returns the user, password and project of id.
func (s *Stack) Credentials(id Identity) (user, password, project string, err error) {
	prefix := map[Identity]string{Admin: "ADMIN", Demo: "DEMO", AltDemo: "ALT_DEMO"}[id]
	if prefix == "" {
		return "", "", "", fmt.Errorf("testutil: no credentials for identity %q", id)
	}
	user, password, project = s.Env[prefix+"_USER"], s.Env[prefix+"_PASSWORD"], s.Env[prefix+"_PROJECT"]
	if user == "" || password == "" || project == "" {
		return "", "", "", fmt.Errorf("testutil: stack.env lacks %s_USER, _PASSWORD or _PROJECT", prefix)
	}
	return user, password, project, nil
}

// Token returns a project-scoped token of id, from Keystone's
// POST /v3/auth/tokens, cached until ten minutes before it expires (each
// issue costs a bcrypt round, seconds on a busy machine).
func (s *Stack) Token(id Identity) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok := s.tokens[id]; tok != nil && time.Until(tok.ExpiresAt) > 10*time.Minute {
		return tok, nil
	}
	user, password, project, err := s.Credentials(id)
	if err != nil {
		return nil, err
	}
	tok, err := issueToken(s.KeystoneURL, user, password, project)
	if err != nil {
		return nil, err
	}
	s.tokens[id] = tok
	return tok, nil
}

func issueToken(keystone, user, password, project string) (*Token, error) {
	body, _ := json.Marshal(map[string]any{"auth": map[string]any{
		"identity": map[string]any{
			"methods": []string{"password"},
			"password": map[string]any{"user": map[string]any{
				"name": user, "password": password, "domain": map[string]string{"name": "Default"},
			}},
		},
		"scope": map[string]any{"project": map[string]any{
			"name": project, "domain": map[string]string{"name": "Default"},
		}},
	}})
	var lastErr error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		req, err := http.NewRequest(http.MethodPost, keystone+"/auth/tokens?nocatalog", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := keystoneClient.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		var out struct {
			Token struct {
				ExpiresAt time.Time `json:"expires_at"`
				Project   struct {
					ID string `json:"id"`
				} `json:"project"`
				User struct {
					ID string `json:"id"`
				} `json:"user"`
				Roles []struct {
					Name string `json:"name"`
				} `json:"roles"`
			} `json:"token"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			lastErr = fmt.Errorf("keystone answered %d", resp.StatusCode)
			continue
		case resp.StatusCode != http.StatusCreated:
			return nil, fmt.Errorf("testutil: token for %s in %s: keystone answered %d", user, project, resp.StatusCode)
		case err != nil:
			return nil, fmt.Errorf("testutil: token for %s: %w", user, err)
		}
		tok := &Token{
			ID: resp.Header.Get("X-Subject-Token"), ProjectID: out.Token.Project.ID,
			UserID: out.Token.User.ID, ExpiresAt: out.Token.ExpiresAt,
		}
		for _, r := range out.Token.Roles {
			tok.Roles = append(tok.Roles, r.Name)
		}
		if tok.ID == "" {
			return nil, errors.New("testutil: keystone issued a token without X-Subject-Token")
		}
		return tok, nil
	}
	return nil, fmt.Errorf("testutil: token for %s in %s: %w", user, project, lastErr)
}

// OpenRC returns the variables STACK_DIR/openrc-NAME exports (NAME is admin,
// demo or alt_demo), for running the openstack CLI as that user.
func (s *Stack) OpenRC(name string) (map[string]string, error) {
	env, err := ReadEnvFile(filepath.Join(s.Dir, "openrc-"+name))
	if err != nil {
		return nil, fmt.Errorf("testutil: openrc of %s: %w", name, err)
	}
	for k := range env {
		if !strings.HasPrefix(k, "OS_") {
			delete(env, k)
		}
	}
	return env, nil
}

// DaemonPID returns the PID devstack recorded for a daemon (qinling-api,
// engine-1, rabbitmq, ...), checking that the very process still runs.
func (s *Stack) DaemonPID(name string) (int, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, "pids", name+".pid"))
	if err != nil {
		return 0, fmt.Errorf("testutil: %s is not running: %w", name, err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, fmt.Errorf("testutil: malformed PID file of %s: %q", name, data)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, err
	}
	if start, ok := procStartTime(pid); !ok || start != fields[1] {
		return 0, fmt.Errorf("testutil: %s (PID %d) is not running", name, pid)
	}
	return pid, nil
}

// procStartTime is field 22 of /proc/PID/stat; ok is false for a process
// that is gone or a zombie.
func procStartTime(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	rest := string(data)
	rest = rest[strings.LastIndexByte(rest, ')')+1:]
	f := strings.Fields(rest)
	if len(f) < 20 || f[0] == "Z" {
		return "", false
	}
	return f[19], true
}

// KillDaemon sends SIGKILL to a daemon of the stack by its recorded PID and
// waits until it is gone.
func (s *Stack) KillDaemon(name string) error {
	pid, err := s.DaemonPID(name)
	if err != nil {
		return err
	}
	start, _ := procStartTime(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("testutil: kill %s (PID %d): %w", name, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if now, ok := procStartTime(pid); !ok || now != start {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testutil: %s (PID %d) still alive 30s after SIGKILL", name, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RestartCommand is devstack/restart.sh SERVICE ARGS... for this stack, not
// started; its output is collected in the returned buffer.
func (s *Stack) RestartCommand(ctx context.Context, service string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	return s.devstackCommand(ctx, "restart.sh", append([]string{service}, args...)...)
}

func (s *Stack) devstackCommand(ctx context.Context, script string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.Env["DEVSTACK_DIR"], script), args...)
	cmd.Env = append(os.Environ(), EnvStackDir+"="+s.Dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

// Restart runs devstack/restart.sh SERVICE ARGS... and waits until the
// service is back (the script waits for readiness).
func (s *Stack) Restart(service string, args ...string) error {
	return s.runDevstack("restart.sh", service, args...)
}

// Stop runs devstack/stop.sh SERVICE: the daemon (and its children) is
// stopped by its recorded PID and stays stopped until Restart.
func (s *Stack) Stop(service string) error {
	return s.runDevstack("stop.sh", service)
}

func (s *Stack) runDevstack(script, service string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, out := s.devstackCommand(ctx, script, append([]string{service}, args...)...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("devstack/%s %s: %v\n%s", script, service, err, out)
	}
	return nil
}

// LogPaths lists qinling-api's and the engines' log files.
func (s *Stack) LogPaths() []string {
	paths, _ := filepath.Glob(filepath.Join(s.Dir, "logs", "engine-*.log"))
	sort.Strings(paths)
	return append([]string{filepath.Join(s.Dir, "logs", "qinling-api.log")}, paths...)
}

// Logs returns qinling-api's and the engines' logs, one after the other.
func (s *Stack) Logs() string {
	var b strings.Builder
	for _, p := range s.LogPaths() {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "==> %s <==\n", p)
		b.Write(data)
	}
	return b.String()
}

// LogTail returns the last n lines of each of qinling-api's and the engines' logs.
func (s *Stack) LogTail(n int) string {
	var b strings.Builder
	for _, p := range s.LogPaths() {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", p, strings.Join(lines, "\n"))
	}
	return b.String()
}
