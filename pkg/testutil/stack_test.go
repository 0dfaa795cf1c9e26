package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stack.env")
	require.NoError(t, os.WriteFile(path, []byte(`# comment
STACK_DIR=/opt/qinling-stack
ENABLED_SERVICES="mariadb rabbitmq"
export OS_USERNAME=demo
DATABASE_URL=mysql+pymysql://q:p@127.0.0.1:1/q?charset=utf8mb4

unset OS_TOKEN
`), 0o600))
	env, err := ReadEnvFile(path)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"STACK_DIR":        "/opt/qinling-stack",
		"ENABLED_SERVICES": "mariadb rabbitmq",
		"OS_USERNAME":      "demo",
		"DATABASE_URL":     "mysql+pymysql://q:p@127.0.0.1:1/q?charset=utf8mb4",
	}, env)
	st := &Stack{Env: env}
	assert.True(t, st.Enabled("rabbitmq"))
	assert.False(t, st.Enabled("swift"), "a setting of a service is not the service")
	assert.False(t, st.Enabled("rabbit"))
}

// fakeKeystone answers POST /v3/auth/tokens for user demo (password pw,
// project demo) and counts the tokens it issued.
func fakeKeystone(t *testing.T, issued *atomic.Int64) *httptest.Server {
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v3/auth/tokens" {
			http.NotFound(w, r)
			return
		}
		var body struct {
			Auth struct {
				Identity struct {
					Password struct {
						User struct{ Name, Password string } `json:"user"`
					} `json:"password"`
				} `json:"identity"`
				Scope struct {
					Project struct{ Name string } `json:"project"`
				} `json:"scope"`
			} `json:"auth"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u := body.Auth.Identity.Password.User
		if u.Name != "demo" || u.Password != "pw" || body.Auth.Scope.Project.Name != "demo" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n := issued.Add(1)
		w.Header().Set("X-Subject-Token", fmt.Sprintf("tok-%d", n))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": map[string]any{
			"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"project":    map[string]any{"id": "p-demo"},
			"user":       map[string]any{"id": "u-demo"},
			"roles":      []any{map[string]any{"name": "member"}, map[string]any{"name": "reader"}},
		}})
	}))
	t.Cleanup(ks.Close)
	return ks
}

func TestStackToken_IssuedOnceAndCached(t *testing.T) {
	var issued atomic.Int64
	ks := fakeKeystone(t, &issued)
	st := &Stack{KeystoneURL: ks.URL + "/v3", tokens: map[Identity]*Token{}, Env: map[string]string{
		"DEMO_USER": "demo", "DEMO_PASSWORD": "pw", "DEMO_PROJECT": "demo",
		"ALT_DEMO_USER": "alt_demo", "ALT_DEMO_PASSWORD": "wrong", "ALT_DEMO_PROJECT": "alt_demo",
	}}
	tok, err := st.Token(Demo)
	require.NoError(t, err)
	assert.Equal(t, "tok-1", tok.ID)
	assert.Equal(t, "p-demo", tok.ProjectID)
	assert.Equal(t, "u-demo", tok.UserID)
	assert.Equal(t, []string{"member", "reader"}, tok.Roles)

	again, err := st.Token(Demo)
	require.NoError(t, err)
	assert.Same(t, tok, again, "a valid token is reused")
	assert.EqualValues(t, 1, issued.Load())

	_, err = st.Token(AltDemo)
	assert.ErrorContains(t, err, "keystone answered 401")
	_, err = st.Token(Admin)
	assert.ErrorContains(t, err, "ADMIN_USER")
}

func TestTarget_SendsTheIdentitysToken(t *testing.T) {
	var issued atomic.Int64
	ks := fakeKeystone(t, &issued)
	var got []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := r.Header["X-Auth-Token"]
		if !ok {
			v = []string{"<none>"}
		}
		got = append(got, v[0])
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(api.Close)

	st := &Stack{URL: api.URL, KeystoneURL: ks.URL + "/v3", tokens: map[Identity]*Token{},
		Env: map[string]string{"DEMO_USER": "demo", "DEMO_PASSWORD": "pw", "DEMO_PROJECT": "demo"}}
	real := StackTarget(st)
	assert.True(t, real.Real())
	assert.Equal(t, Demo, real.Identity())
	real.Do(t, http.MethodGet, "/v1/functions", nil)
	real.As(Anonymous).Do(t, http.MethodGet, "/v1/functions", nil)
	real.Do(t, http.MethodGet, "/v1/functions", nil, "X-Auth-Token", "garbage")
	assert.Equal(t, "p-demo", real.ProjectID(t))

	aio := &Target{URL: api.URL, Server: &Server{}, as: Admin, client: httpClient}
	aio.Do(t, http.MethodGet, "/v1/functions", nil)
	assert.Equal(t, "default", aio.ProjectID(t))
	assert.Equal(t, 1, aio.Engines())
	assert.Equal(t, 2, aio.PoolSize(), "the option's default")
	assert.Equal(t, DefaultMaxPackageSize, aio.MaxPackageSize())

	assert.Equal(t, []string{"tok-1", "<none>", "garbage", "notused"}, got)
}

func TestProcStartTime(t *testing.T) {
	start, ok := procStartTime(os.Getpid())
	require.True(t, ok)
	assert.NotEmpty(t, start)
	_, ok = procStartTime(1 << 30)
	assert.False(t, ok)
}

func TestStackDaemonPID(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "pids"), 0o700))
	st := &Stack{Dir: dir}
	start, _ := procStartTime(os.Getpid())
	write := func(content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "pids", "engine-1.pid"), []byte(content), 0o600))
	}
	write(strconv.Itoa(os.Getpid()) + " " + start + "\n")
	pid, err := st.DaemonPID("engine-1")
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), pid)

	write(strconv.Itoa(os.Getpid()) + " 1\n") // same PID, another process's start time
	_, err = st.DaemonPID("engine-1")
	assert.ErrorContains(t, err, "not running")
	_, err = st.DaemonPID("engine-9")
	assert.ErrorContains(t, err, "not running")
}
