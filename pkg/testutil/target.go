package testutil

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// DefaultMaxPackageSize is [storage] max_package_size's default.
const DefaultMaxPackageSize = 53477376

// Target is the qinling API a test talks to, acting as one identity, in one
// of two modes:
//
//   - all-in-one (the default): a private server from Launch, auth off, so
//     every identity is project "default" and may do anything;
//   - real stack (QINLING_REAL_STACK=1): the devstack stack, with a Keystone
//     token of the identity on every request.
//
// The same test body runs in both: act as Demo for what a member does and as
// Admin for admin-only calls (runtime create/delete, pool show); ask
// ProjectID for the project a resource should land in.
type Target struct {
	URL    string
	Server *Server // all-in-one mode
	Stack  *Stack  // real-stack mode

	as     Identity
	client *http.Client
	fixed  string // token sent whatever as says (WithToken)
}

// NewTarget returns the target of this test process: the devstack stack when
// QINLING_REAL_STACK=1 (opts are then ignored: a live stack's config is
// devstack's), otherwise a new all-in-one server in dir started with opts.
// stop ends what NewTarget started. The target acts as Demo.
func NewTarget(dir string, opts ...Option) (tgt *Target, stop func() error, err error) {
	if RealStack() {
		st, err := LoadStack()
		if err != nil {
			return nil, nil, err
		}
		return StackTarget(st), func() error { return nil }, nil
	}
	s, err := Launch(dir, opts...)
	if err != nil {
		return nil, nil, err
	}
	return ServerTarget(s), s.Stop, nil
}

// ServerTarget is the target of an all-in-one server, acting as Demo.
func ServerTarget(s *Server) *Target {
	return &Target{URL: s.URL, Server: s, as: Demo, client: httpClient}
}

// StackTarget is the target of a devstack stack, acting as Demo.
func StackTarget(st *Stack) *Target {
	return &Target{URL: st.URL, Stack: st, as: Demo, client: httpClient}
}

// Real reports whether the target is the devstack stack (with Keystone).
func (tg *Target) Real() bool { return tg.Stack != nil }

// As returns the same target acting as id.
func (tg *Target) As(id Identity) *Target {
	c := *tg
	c.as = id
	return &c
}

// At returns the same target, identity and credentials sent to another API
// process of the same deployment (a second qinling-api on another port).
func (tg *Target) At(url string) *Target {
	c := *tg
	c.URL = strings.TrimRight(url, "/")
	return &c
}

// Identity is who the target acts as.
func (tg *Target) Identity() Identity { return tg.as }

// WithTimeout returns the same target whose requests give up after d.
func (tg *Target) WithTimeout(d time.Duration) *Target {
	c := *tg
	c.client = &http.Client{Timeout: d}
	return &c
}

// WithToken returns the same target sending token as its X-Auth-Token: for
// an all-in-one started with authentication on against a fake Keystone
// (pkg/keystone/keystonetest), whose tokens the test made up.
func (tg *Target) WithToken(token string) *Target {
	c := *tg
	c.fixed = token
	return &c
}

// token is the X-Auth-Token the target sends: none for Anonymous, the
// client's "notused" on the all-in-one, a Keystone token on the stack.
func (tg *Target) token() (string, error) {
	if tg.fixed != "" {
		return tg.fixed, nil
	}
	if tg.as == Anonymous {
		return "", nil
	}
	if !tg.Real() {
		return "notused", nil
	}
	tok, err := tg.Stack.Token(tg.as)
	if err != nil {
		return "", err
	}
	return tok.ID, nil
}

// Do sends a request as the target's identity; see Server.Do for body and
// headers (an "X-Auth-Token" header pair overrides the token). Only a
// transport error fails the test.
func (tg *Target) Do(t testing.TB, method, path string, body any, headers ...string) *Response {
	t.Helper()
	r, err := tg.TryDo(method, path, body, headers...)
	require.NoError(t, err)
	return r
}

// TryDo is Do for goroutines and loops that must not fail the test: it
// returns transport errors (timeouts included) instead.
func (tg *Target) TryDo(method, path string, body any, headers ...string) (*Response, error) {
	token, err := tg.token()
	if err != nil {
		return nil, err
	}
	return send(tg.client, tg.URL, token, method, path, body, headers...)
}

// ProjectID is the project the target's identity creates resources in:
// "default" on the all-in-one, the token's project on the stack.
func (tg *Target) ProjectID(t testing.TB) string {
	t.Helper()
	if !tg.Real() {
		return "default"
	}
	tok, err := tg.Stack.Token(tg.as)
	require.NoError(t, err)
	return tok.ProjectID
}

// Engines is how many engine processes serve the target.
func (tg *Target) Engines() int {
	if tg.Real() {
		return tg.Stack.Engines
	}
	return 1
}

// PoolSize is [local_orchestrator] pool_size of the target's engines.
func (tg *Target) PoolSize() int {
	v := ""
	if tg.Real() {
		v = tg.Stack.Env["QINLING_POOL_SIZE"]
	} else {
		v = tg.Server.Option("local_orchestrator", "pool_size")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 2 // the option's default
	}
	return n
}

// MaxPackageSize is [storage] max_package_size of the target's API.
func (tg *Target) MaxPackageSize() int {
	v := ""
	if tg.Real() {
		v = tg.Stack.Env["QINLING_MAX_PACKAGE_SIZE"]
	} else {
		v = tg.Server.Option("storage", "max_package_size")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return DefaultMaxPackageSize
	}
	return n
}

// Logs returns the server logs: the all-in-one's, or the stack's qinling-api
// and engine logs.
func (tg *Target) Logs() string {
	if tg.Real() {
		return tg.Stack.Logs()
	}
	return tg.Server.Log()
}

// LogTail returns the last n lines of the server log(s), for failure reports.
func (tg *Target) LogTail(n int) string {
	if tg.Real() {
		return tg.Stack.LogTail(n)
	}
	return tg.Server.LogTail(n)
}

// String names the target for messages.
func (tg *Target) String() string {
	mode := "all-in-one"
	if tg.Real() {
		mode = "devstack"
	}
	return fmt.Sprintf("%s %s as %q", mode, tg.URL, tg.as)
}

// SkipUnlessReal skips a test that needs the devstack stack (Keystone,
// RabbitMQ, several engines) when the target is the all-in-one.
func SkipUnlessReal(t testing.TB, tg *Target, why string) {
	t.Helper()
	if !tg.Real() {
		t.Skipf("needs the real stack (%s=1 after devstack/stack.sh): %s", EnvRealStack, why)
	}
}

// SkipIfReal skips a test that only makes sense on a private all-in-one.
func SkipIfReal(t testing.TB, tg *Target, why string) {
	t.Helper()
	if tg.Real() {
		t.Skipf("all-in-one only (%s=1 is set): %s", EnvRealStack, why)
	}
}

// stackDirFromEnv is the STACK_DIR tests use.
func stackDirFromEnv() string {
	if d := os.Getenv(EnvStackDir); d != "" {
		return d
	}
	return DefaultStackDir
}
