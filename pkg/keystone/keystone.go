// Package keystone authenticates API callers by validating their Keystone
// (identity v3) tokens, the job keystonemiddleware's auth_token did for
// upstream Qinling.
//
// A token is validated by asking Keystone about itself:
//
//	GET {www_authenticate_uri}/v3/auth/tokens?nocatalog
//	X-Auth-Token: <token>
//	X-Subject-Token: <token>
//
// Keystone's default policy lets a token validate itself, so no service
// credentials are needed, none are kept in this process for the purpose, and
// a misconfigured service user cannot lock every caller out. The answer gives
// the caller's project, user, roles and the token's expiry.
//
// Answers are cached (see cache.go) so that a busy client costs one Keystone
// round trip per token_cache_time rather than one per request.
package keystone

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"golang.org/x/sync/singleflight"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// HeaderAuthToken carries the caller's token, as every OpenStack client sends it.
const HeaderAuthToken = "X-Auth-Token"

// Defaults of the options below.
const (
	// DefaultTimeout bounds one validation round trip to Keystone; past it
	// the caller gets a 503 instead of a hanging request.
	DefaultTimeout = 10 * time.Second
	// DefaultNegativeTTL is how long a token Keystone rejected stays
	// rejected without asking again, so a client retrying a bad token in a
	// loop cannot hammer Keystone through us.
	DefaultNegativeTTL = 10 * time.Second
	// lateAnswers is how many timeouts a validation may run in all: a
	// caller gives up after one, but Keystone's answer, if it comes within
	// this many, still fills the cache. A Keystone slowed down past the
	// timeout (an overloaded machine: docs/benchmarks.md, "The real stack")
	// then costs one 503, not one per retry, and is asked once per token
	// meanwhile, not once per timeout.
	lateAnswers = 6
)

// The errors Validate returns. Their messages are upstream's (without the
// token upstream echoed back: a token is a credential and has no place in a
// response or a log).
var (
	ErrAuthRequired = errdefs.New(errdefs.KindUnauthorized, "Failed to validate access token: Authentication required")
	ErrInvalidToken = errdefs.New(errdefs.KindUnauthorized, "Failed to validate access token: Auth token is invalid")
	ErrNotScoped    = errdefs.New(errdefs.KindUnauthorized, "Failed to validate access token: Auth token is not scoped to a project")
)

// unavailableMsg is the public message of every failure that is Keystone's,
// not the caller's: a 503 the client may retry.
const unavailableMsg = "Identity service unavailable"

// Validator validates Keystone tokens and caches the answers. It is safe for
// concurrent use. Its Authenticate method makes it the API's authenticator.
type Validator struct {
	client      *gophercloud.ServiceClient // identity v3; carries no token of its own
	uri         string                     // www_authenticate_uri, for the WWW-Authenticate challenge
	timeout     time.Duration
	cacheTime   time.Duration
	cacheSize   int
	negativeTTL time.Duration
	now         func() time.Time
	log         *slog.Logger

	cache  *cache
	flight singleflight.Group
}

// Option changes a Validator's defaults.
type Option func(*Validator)

// WithTimeout bounds each Keystone round trip (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(v *Validator) { v.timeout = d } }

// WithNegativeTTL sets how long a rejected token stays rejected without asking
// Keystone again (default DefaultNegativeTTL; 0 disables negative caching).
func WithNegativeTTL(d time.Duration) Option { return func(v *Validator) { v.negativeTTL = d } }

// WithClock replaces time.Now, for tests of expiry.
func WithClock(now func() time.Time) Option { return func(v *Validator) { v.now = now } }

// WithLogger sets where unusual Keystone answers are reported.
func WithLogger(l *slog.Logger) Option { return func(v *Validator) { v.log = l } }

// New returns a Validator for the [keystone_authtoken] section: tokens are
// validated at www_authenticate_uri (with or without a /v3 suffix), answers
// cached for at most token_cache_time in at most token_cache_size entries
// (either one zero turns the cache off). The service user options are not
// used: a token validates itself.
func New(cfg config.KeystoneAuth, opts ...Option) (*Validator, error) {
	uri := strings.TrimSpace(cfg.WWWAuthenticateURI)
	if uri == "" {
		return nil, errors.New("keystone_authtoken.www_authenticate_uri: required when pecan.auth_enable is true")
	}
	v := &Validator{
		uri:         uri,
		timeout:     DefaultTimeout,
		cacheTime:   cfg.TokenCacheTime,
		cacheSize:   cfg.TokenCacheSize,
		negativeTTL: DefaultNegativeTTL,
		now:         time.Now,
		log:         slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(v)
	}
	if v.timeout <= 0 {
		return nil, fmt.Errorf("keystone: timeout %s: must be positive", v.timeout)
	}
	pc, err := openstack.NewClient(uri)
	if err != nil {
		return nil, fmt.Errorf("keystone_authtoken.www_authenticate_uri %q: %w", uri, err)
	}
	pc.HTTPClient = http.Client{Timeout: lateAnswers * v.timeout} // callers wait one timeout (Validate)
	pc.UserAgent.Prepend("qinling-api")
	if v.client, err = openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{}); err != nil {
		return nil, fmt.Errorf("keystone_authtoken.www_authenticate_uri %q: %w", uri, err)
	}
	v.cache, err = newCache(v.cacheSize, v.cacheTime, v.negativeTTL)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Endpoint is the identity v3 URL tokens are validated at.
func (v *Validator) Endpoint() string { return v.client.Endpoint }

// Challenge is the WWW-Authenticate value of a 401, telling the client where
// to get a token (keystonemiddleware's header).
func (v *Validator) Challenge() string { return fmt.Sprintf("Keystone uri=%q", v.uri) }

// Authenticate validates the request's X-Auth-Token; it is the API's
// Authenticator.
func (v *Validator) Authenticate(r *http.Request) (reqctx.Identity, error) {
	return v.Validate(r.Context(), strings.TrimSpace(r.Header.Get(HeaderAuthToken)))
}

// Validate returns the identity token stands for, with AuthEnabled set. Its
// errors are errdefs kinds: Unauthorized (ErrAuthRequired, ErrInvalidToken,
// ErrNotScoped) when the token is missing or Keystone rejects it, Unavailable
// when Keystone cannot answer (down, 5xx, slower than the timeout).
//
// Concurrent validations of one uncached token share a single Keystone call,
// which is not cancelled when one of its waiters gives up: each waits at
// most the timeout, while the call goes on (up to lateAnswers timeouts) so
// that a late answer is cached for the caller's retry.
func (v *Validator) Validate(ctx context.Context, token string) (reqctx.Identity, error) {
	if token == "" {
		return reqctx.Identity{}, ErrAuthRequired
	}
	key := sha256.Sum256([]byte(token))
	if id, err, ok := v.cache.get(key, v.now()); ok {
		return withToken(id, token, err)
	}
	ch := v.flight.DoChan(string(key[:]), func() (any, error) {
		// A flight that finished just before this one started has filled
		// the cache: look again rather than ask Keystone twice.
		if id, err, ok := v.cache.get(key, v.now()); ok {
			return id, err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateAnswers*v.timeout)
		defer cancel()
		id, until, err := v.fetch(fctx, token)
		v.cache.put(key, id, until, err, v.now())
		return id, err
	})
	timer := time.NewTimer(v.timeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		id, _ := res.Val.(reqctx.Identity)
		return withToken(id, token, res.Err)
	case <-timer.C:
		return reqctx.Identity{}, errdefs.Wrap(errdefs.KindUnavailable,
			fmt.Errorf("keystone: no answer within %s", v.timeout), unavailableMsg)
	case <-ctx.Done():
		return reqctx.Identity{}, errdefs.Wrap(errdefs.KindUnavailable, ctx.Err(), unavailableMsg)
	}
}

// withToken completes a cached identity for its caller. Cached identities
// never hold the token; each caller gets its own copy of the roles.
func withToken(id reqctx.Identity, token string, err error) (reqctx.Identity, error) {
	if err != nil {
		return reqctx.Identity{}, err
	}
	id.Roles = slices.Clone(id.Roles)
	id.AuthToken = token
	return id, nil
}

// tokenBody is the part of Keystone's token document we read.
type tokenBody struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// fetch asks Keystone about token and returns the identity and the time until
// which it may be trusted without asking again.
func (v *Validator) fetch(ctx context.Context, token string) (reqctx.Identity, time.Time, error) {
	// A shallow copy per call: the token travels in this copy's headers,
	// while the connection pool of the shared provider client is reused.
	sc := *v.client
	sc.MoreHeaders = map[string]string{HeaderAuthToken: token}
	var r tokens.GetResult
	resp, err := sc.Get(ctx, sc.ServiceURL("auth", "tokens")+"?nocatalog", &r.Body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"X-Subject-Token": token},
		OkCodes:     []int{http.StatusOK, http.StatusNonAuthoritativeInfo},
	})
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	if r.Err != nil {
		return reqctx.Identity{}, time.Time{}, v.classify(r.Err)
	}

	var tb tokenBody
	project, perr := r.ExtractProject()
	user, uerr := r.ExtractUser()
	roles, rerr := r.ExtractRoles()
	if err := errors.Join(r.ExtractInto(&tb), perr, uerr, rerr); err != nil {
		return reqctx.Identity{}, time.Time{}, errdefs.Wrap(errdefs.KindUnavailable, err, unavailableMsg)
	}
	now := v.now()
	if tb.ExpiresAt.IsZero() {
		return reqctx.Identity{}, time.Time{}, errdefs.Wrap(errdefs.KindUnavailable,
			errors.New("keystone: token document without expires_at"), unavailableMsg)
	}
	if !tb.ExpiresAt.After(now) {
		return reqctx.Identity{}, time.Time{}, ErrInvalidToken
	}
	if project == nil || project.ID == "" {
		return reqctx.Identity{}, time.Time{}, ErrNotScoped
	}
	id := reqctx.Identity{ProjectID: project.ID, AuthEnabled: true, Roles: make([]string, 0, len(roles))}
	if user != nil {
		id.UserID = user.ID
	}
	for _, role := range roles {
		id.Roles = append(id.Roles, role.Name)
	}
	until := tb.ExpiresAt
	if limit := now.Add(v.cacheTime); limit.Before(until) {
		until = limit
	}
	return id, until, nil
}

// classify turns a failed Keystone call into the caller's error: a rejected
// token is the caller's problem (401), anything else is Keystone's (503).
func (v *Validator) classify(err error) error {
	var code gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &code) {
		// Connection refused, DNS, timeout, malformed JSON.
		return errdefs.Wrap(errdefs.KindUnavailable, err, unavailableMsg)
	}
	switch s := code.Actual; {
	case s == http.StatusUnauthorized || s == http.StatusNotFound:
		return ErrInvalidToken
	case s == http.StatusTooManyRequests || s >= 500:
		return errdefs.Wrap(errdefs.KindUnavailable, fmt.Errorf("keystone answered %d", s), unavailableMsg)
	default:
		// 400, 403 and the like: Keystone refuses to validate this token
		// (e.g. a tightened identity:validate_token policy). The caller
		// cannot be let in; the operator needs to know.
		v.log.Warn("keystone refused to validate a token", "status", s, "endpoint", v.client.Endpoint)
		return ErrInvalidToken
	}
}
