package api_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/keystone"
	"github.com/qinling-go/qinling/pkg/keystone/keystonetest"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// Tokens the fake Keystone knows: an admin, and members of two projects.
const (
	adminToken = "admin-token"
	aliceToken = "alice-token" // member of proj-a
	bobToken   = "bob-token"   // member of proj-b
)

// newAuthServer runs the API with Keystone authentication against a fake
// Keystone, over the same real engine and fake orchestrator as newServer.
func newAuthServer(t *testing.T) (string, *keystonetest.Server) {
	t.Helper()
	ks := keystonetest.New(t)
	ks.Add(adminToken, keystonetest.Token{ProjectID: "proj-admin", UserID: "admin", Roles: []string{"admin", "member", "reader"}})
	ks.Add(aliceToken, keystonetest.Token{ProjectID: "proj-a", UserID: "alice", Roles: []string{"member", "reader"}})
	ks.Add(bobToken, keystonetest.Token{ProjectID: "proj-b", UserID: "bob", Roles: []string{"member", "reader"}})
	auth, err := keystone.New(config.KeystoneAuth{WWWAuthenticateURI: ks.URL, TokenCacheSize: 100, TokenCacheTime: time.Minute},
		keystone.WithTimeout(2*time.Second))
	require.NoError(t, err)

	_, ts, _ := newAPIWithAuth(t, auth)
	return ts.URL, ks
}

// call sends a request with token as X-Auth-Token (none when empty).
func call(t *testing.T, token, method, url, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func callJSON(t *testing.T, token, method, url, body string) response {
	t.Helper()
	return call(t, token, method, url, "application/json", strings.NewReader(body))
}

func createRuntimeAs(t *testing.T, base, token string) string {
	t.Helper()
	r := callJSON(t, token, "POST", base+"/v1/runtimes", `{"image": "python3", "name": "py"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	id := r.json(t)["id"].(string)
	require.Eventually(t, func() bool {
		return callJSON(t, token, "GET", base+"/v1/runtimes/"+id, "").json(t)["status"] == "available"
	}, 5*time.Second, 10*time.Millisecond)
	return id
}

func createFunctionAs(t *testing.T, base, token, runtimeID string) string {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'hi'\n"})
	sum := md5.Sum(pkg)
	ct, body := multipartBody(t, map[string]string{
		"runtime_id": runtimeID, "name": "hello", "entry": "hello.main",
		"code": fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, hex.EncodeToString(sum[:])),
	}, pkg)
	r := call(t, token, "POST", base+"/v1/functions", ct, body)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	return r.json(t)["id"].(string)
}

func createExecutionAs(t *testing.T, base, token, functionID string) string {
	t.Helper()
	r := callJSON(t, token, "POST", base+"/v1/executions", fmt.Sprintf(`{"function_id": %q}`, functionID))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	return r.json(t)["id"].(string)
}

// ids returns the ids of a list answer's items under key.
func ids(t *testing.T, r response, key string) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	out := []string{}
	for _, item := range r.json(t)[key].([]any) {
		out = append(out, item.(map[string]any)["id"].(string))
	}
	return out
}

// authedRoutes reads every authenticated route registered in server.go, so
// that a route added later is covered without editing this test.
func authedRoutes(t *testing.T) [][2]string {
	t.Helper()
	src, err := os.ReadFile("server.go")
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^\s*authed\("(?:([A-Z]+) )?(/[^"]*)"`)
	param := regexp.MustCompile(`\{[^}]*\}`)
	var out [][2]string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		method, path := m[1], m[2]
		if method == "" { // the catch-all
			method, path = "GET", "/v1/no-such-thing"
		}
		out = append(out, [2]string{method, param.ReplaceAllString(path, "6d2b0a9e-0000-4000-8000-000000000000")})
	}
	require.GreaterOrEqual(t, len(out), 17, "server.go's routes were not found: %v", out)
	return out
}

func TestAuth_Unauthenticated(t *testing.T) {
	t.Parallel()
	base, ks := newAuthServer(t)
	for _, route := range authedRoutes(t) {
		method, path := route[0], route[1]
		for _, tc := range []struct{ name, token, msg string }{
			{name: "no token", msg: "Failed to validate access token: Authentication required"},
			{name: "garbage token", token: "garbage", msg: "Failed to validate access token: Auth token is invalid"},
		} {
			t.Run(method+" "+path+" "+tc.name, func(t *testing.T) {
				r := callJSON(t, tc.token, method, base+path, `{}`)
				require.Equal(t, http.StatusUnauthorized, r.status, string(r.body))
				require.Equal(t, "application/json", r.header.Get("Content-Type"))
				require.Equal(t, `Keystone uri="`+ks.URL+`"`, r.header.Get("WWW-Authenticate"))
				require.Equal(t, map[string]any{"faultcode": "Client", "faultstring": tc.msg, "debuginfo": nil}, r.json(t))
			})
		}
	}
	require.Equal(t, 1, ks.Calls("garbage"), "the bad token was cached negatively")
}

func TestAuth_OpenRoutes(t *testing.T) {
	t.Parallel()
	base, ks := newAuthServer(t)
	for _, tc := range []struct{ name, path, token string }{
		{name: "root", path: "/"},
		{name: "v1 with slash", path: "/v1/"},
		{name: "v1 without slash", path: "/v1"},
		{name: "root with a bad token", path: "/", token: "garbage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := callJSON(t, tc.token, "GET", base+tc.path, "")
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			require.Empty(t, r.header.Get("WWW-Authenticate"))
		})
	}
	require.Zero(t, ks.TotalCalls(), "open routes never ask Keystone")
}

func TestAuth_KeystoneDown(t *testing.T) {
	t.Parallel()
	base, ks := newAuthServer(t)
	ks.FailWith(http.StatusInternalServerError)
	r := callJSON(t, aliceToken, "GET", base+"/v1/functions", "")
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Empty(t, r.header.Get("WWW-Authenticate"))
	require.Equal(t, map[string]any{"faultcode": "Server", "faultstring": "Identity service unavailable", "debuginfo": nil}, r.json(t))

	// Recovery needs no restart: outages are not cached.
	ks.FailWith(0)
	require.Equal(t, http.StatusOK, callJSON(t, aliceToken, "GET", base+"/v1/functions", "").status)
}

func TestAuth_Policy(t *testing.T) {
	t.Parallel()
	base, _ := newAuthServer(t)
	rt := createRuntimeAs(t, base, adminToken)
	for _, tc := range []struct {
		name, method, path, body string
	}{
		{name: "create runtime", method: "POST", path: "/v1/runtimes", body: `{"image": "python3"}`},
		{name: "update runtime", method: "PUT", path: "/v1/runtimes/" + rt, body: `{"name": "x"}`},
		{name: "delete runtime", method: "DELETE", path: "/v1/runtimes/" + rt},
		{name: "runtime pool", method: "GET", path: "/v1/runtimes/" + rt + "/pool"},
		{name: "all projects' functions", method: "GET", path: "/v1/functions?all_projects=true"},
		{name: "all projects' executions", method: "GET", path: "/v1/executions?all_projects=1"},
	} {
		t.Run("member: "+tc.name, func(t *testing.T) {
			r := callJSON(t, aliceToken, tc.method, base+tc.path, tc.body)
			require.Equal(t, http.StatusForbidden, r.status, string(r.body))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Equal(t, map[string]any{"faultcode": "Client", "faultstring": "Operation not allowed", "debuginfo": nil}, r.json(t))
		})
	}
	t.Run("member: read runtimes", func(t *testing.T) {
		require.Contains(t, ids(t, callJSON(t, aliceToken, "GET", base+"/v1/runtimes", ""), "runtimes"), rt)
		require.Equal(t, http.StatusOK, callJSON(t, aliceToken, "GET", base+"/v1/runtimes/"+rt, "").status)
	})
	t.Run("admin: pool and update", func(t *testing.T) {
		require.Equal(t, http.StatusOK, callJSON(t, adminToken, "GET", base+"/v1/runtimes/"+rt+"/pool", "").status)
		r := callJSON(t, adminToken, "PUT", base+"/v1/runtimes/"+rt, `{"name": "renamed"}`)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
	})
}

// twoProjects starts an authenticated server with the admin's runtime rt
// and a function of it in alice's project (fa) and in bob's (fb).
func twoProjects(t *testing.T) (base, rt, fa, fb string) {
	t.Helper()
	base, _ = newAuthServer(t)
	rt = createRuntimeAs(t, base, adminToken)
	return base, rt, createFunctionAs(t, base, aliceToken, rt), createFunctionAs(t, base, bobToken, rt)
}

func TestAuth_ProjectScoping(t *testing.T) {
	t.Parallel()
	base, rt, fa, fb := twoProjects(t)
	ea := createExecutionAs(t, base, aliceToken, fa)
	eb := createExecutionAs(t, base, bobToken, fb)

	get := func(token, path string) int { return callJSON(t, token, "GET", base+path, "").status }
	for _, tc := range []struct {
		name    string
		token   string
		path    string
		key     string
		want    []string
		wantNot []string
	}{
		{name: "alice lists her functions only", token: aliceToken, path: "/v1/functions", key: "functions", want: []string{fa}},
		{name: "bob lists his functions only", token: bobToken, path: "/v1/functions", key: "functions", want: []string{fb}},
		{name: "alice lists her executions only", token: aliceToken, path: "/v1/executions", key: "executions", want: []string{ea}},
		{name: "member project_id is ignored", token: aliceToken, path: "/v1/functions?project_id=proj-b", key: "functions", want: []string{fa}},
		{name: "admin lists its own project by default", token: adminToken, path: "/v1/functions", key: "functions", want: []string{}},
		{name: "admin all_projects functions", token: adminToken, path: "/v1/functions?all_projects=true", key: "functions", want: []string{fa, fb}},
		{name: "admin all_projects executions", token: adminToken, path: "/v1/executions?all_projects=true", key: "executions", want: []string{ea, eb}},
		{name: "admin project_id", token: adminToken, path: "/v1/functions?project_id=proj-b", key: "functions", want: []string{fb}},
		{name: "admin project_id executions", token: adminToken, path: "/v1/executions?project_id=proj-a", key: "executions", want: []string{ea}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ElementsMatch(t, tc.want, ids(t, callJSON(t, tc.token, "GET", base+tc.path, ""), tc.key))
		})
	}

	t.Run("another project's objects are 404 to a member", func(t *testing.T) {
		require.Equal(t, http.StatusNotFound, get(aliceToken, "/v1/functions/"+fb))
		require.Equal(t, http.StatusNotFound, get(aliceToken, "/v1/executions/"+eb))
		require.Equal(t, http.StatusNotFound, get(aliceToken, "/v1/executions/"+eb+"/log"))
		r := callJSON(t, aliceToken, "POST", base+"/v1/executions", fmt.Sprintf(`{"function_id": %q}`, fb))
		require.Equal(t, http.StatusNotFound, r.status, "cannot run another project's function")
		require.Equal(t, http.StatusNotFound, call(t, aliceToken, "DELETE", base+"/v1/executions/"+eb, "", nil).status)
		require.Equal(t, http.StatusNotFound, call(t, aliceToken, "DELETE", base+"/v1/functions/"+fb, "", nil).status)
		require.Equal(t, http.StatusOK, get(bobToken, "/v1/functions/"+fb), "still there for its owner")
		require.Equal(t, http.StatusOK, get(bobToken, "/v1/executions/"+eb))
	})
	t.Run("admin reads any project's object by id", func(t *testing.T) {
		r := callJSON(t, adminToken, "GET", base+"/v1/functions/"+fb, "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "proj-b", r.json(t)["project_id"])
		require.Equal(t, http.StatusOK, get(adminToken, "/v1/executions/"+ea))
	})
	t.Run("objects carry the creator's project", func(t *testing.T) {
		require.Equal(t, "proj-a", callJSON(t, aliceToken, "GET", base+"/v1/functions/"+fa, "").json(t)["project_id"])
		require.Equal(t, "proj-admin", callJSON(t, adminToken, "GET", base+"/v1/runtimes/"+rt, "").json(t)["project_id"])
	})
}

// TestAuth_Usage: a member sees their project's usage only; naming another
// project, or all of them, is for admins.
func TestAuth_Usage(t *testing.T) {
	t.Parallel()
	base, _, fa, fb := twoProjects(t)
	createExecutionAs(t, base, aliceToken, fa)
	createExecutionAs(t, base, aliceToken, fa)
	createExecutionAs(t, base, bobToken, fb)

	// usage returns, per project, its executions and its functions.
	usage := func(token, query string) map[string][2]any {
		r := callJSON(t, token, "GET", base+"/v1/usage"+query, "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		out := map[string][2]any{}
		for _, u := range r.json(t)["usages"].([]any) {
			u := u.(map[string]any)
			var fns []any
			for _, f := range u["function_usages"].([]any) {
				fns = append(fns, f.(map[string]any)["function_id"])
			}
			out[u["project_id"].(string)] = [2]any{u["total_executions"], fns}
		}
		return out
	}
	require.Equal(t, map[string][2]any{"proj-a": {2.0, []any{fa}}}, usage(aliceToken, ""))
	require.Equal(t, map[string][2]any{"proj-b": {1.0, []any{fb}}}, usage(adminToken, "?project_id=proj-b"))
	require.Equal(t, map[string][2]any{"proj-a": {2.0, []any{fa}}, "proj-b": {1.0, []any{fb}}}, usage(adminToken, "?all_projects=true"))
	require.Equal(t, map[string][2]any{"proj-admin": {0.0, []any(nil)}}, usage(adminToken, ""), "an admin's own project by default")
	for _, q := range []string{"?project_id=proj-b", "?project_id=proj-a", "?all_projects=true"} {
		r := callJSON(t, aliceToken, "GET", base+"/v1/usage"+q, "")
		require.Equal(t, http.StatusForbidden, r.status, q)
		require.Equal(t, "Operation not allowed", r.json(t)["faultstring"], q)
	}
	r := callJSON(t, aliceToken, "GET", base+"/v1/usage?end=soon", "")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.json(t)["faultstring"], "Invalid end time")
}
