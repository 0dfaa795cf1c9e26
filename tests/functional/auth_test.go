//go:build functional

package functional

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// The real-stack tests of Keystone authentication and upstream's default
// policy. On the all-in-one authentication is off, so they skip.

// authedEndpoints is every authenticated route of the v1 API, with ids that
// need not exist: the token is checked before anything is looked up.
var authedEndpoints = []struct{ method, path string }{
	{"GET", "/v1/runtimes"}, {"POST", "/v1/runtimes"},
	{"GET", "/v1/runtimes/" + unknownUUID}, {"PUT", "/v1/runtimes/" + unknownUUID},
	{"DELETE", "/v1/runtimes/" + unknownUUID}, {"GET", "/v1/runtimes/" + unknownUUID + "/pool"},
	{"GET", "/v1/functions"}, {"POST", "/v1/functions"},
	{"GET", "/v1/functions/" + unknownUUID}, {"PUT", "/v1/functions/" + unknownUUID},
	{"DELETE", "/v1/functions/" + unknownUUID}, {"GET", "/v1/functions/" + unknownUUID + "?download=true"},
	{"POST", "/v1/functions/" + unknownUUID + "/scale_up"}, {"POST", "/v1/functions/" + unknownUUID + "/scale_down"},
	{"POST", "/v1/functions/" + unknownUUID + "/detach"}, {"GET", "/v1/functions/" + unknownUUID + "/workers"},
	{"GET", "/v1/functions/" + unknownUUID + "/versions"}, {"POST", "/v1/functions/" + unknownUUID + "/versions"},
	{"GET", "/v1/functions/" + unknownUUID + "/versions/1"}, {"DELETE", "/v1/functions/" + unknownUUID + "/versions/1"},
	{"POST", "/v1/functions/" + unknownUUID + "/versions/1/detach"},
	{"GET", "/v1/aliases"}, {"POST", "/v1/aliases"}, {"GET", "/v1/aliases/a"}, {"PUT", "/v1/aliases/a"}, {"DELETE", "/v1/aliases/a"},
	{"GET", "/v1/jobs"}, {"POST", "/v1/jobs"}, {"GET", "/v1/jobs/" + unknownUUID},
	{"PUT", "/v1/jobs/" + unknownUUID}, {"DELETE", "/v1/jobs/" + unknownUUID},
	{"GET", "/v1/webhooks"}, {"POST", "/v1/webhooks"}, {"GET", "/v1/webhooks/" + unknownUUID},
	{"PUT", "/v1/webhooks/" + unknownUUID}, {"DELETE", "/v1/webhooks/" + unknownUUID},
	{"GET", "/v1/executions"}, {"POST", "/v1/executions"}, {"GET", "/v1/executions/" + unknownUUID},
	{"GET", "/v1/executions/" + unknownUUID + "/log"}, {"DELETE", "/v1/executions/" + unknownUUID},
	{"GET", "/v1/nothing-here"},
}

// TestAuthRequired: every endpoint but GET /, GET /v1/ and webhook invoke
// answers 401 with a JSON fault to a request without a token and to one
// with a token Keystone never issued.
func TestAuthRequired(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "authentication is off on the all-in-one")
	t.Parallel()
	anonymous := srv.As(testutil.Anonymous)
	for _, ep := range authedEndpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			t.Parallel()
			var body any
			if ep.method == http.MethodPost || ep.method == http.MethodPut {
				body = map[string]any{}
			}
			for _, tc := range []struct {
				name    string
				headers []string
			}{
				{"no token", nil},
				{"garbage token", []string{"X-Auth-Token", "gAAAAABnot-a-real-fernet-token-at-all"}},
			} {
				r := call(t, anonymous, ep.method, ep.path, body, tc.headers...)
				assert.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", tc.name, r)
				if r.Status == http.StatusUnauthorized {
					r.Fault(t)
				}
			}
		})
	}
	t.Run("open endpoints", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"/", "/v1/", "/v1"} {
			r := call(t, anonymous, http.MethodGet, p, nil)
			expect(t, r, http.StatusOK)
			r.Object(t)
		}
	})
	t.Run("webhook invoke needs no token", func(t *testing.T) {
		t.Parallel()
		fid := helloFunction(t)
		r := call(t, srv, http.MethodPost, "/v1/webhooks", map[string]any{
			"function_id": fid, "function_version": 0, "function_alias": nil, "description": "auth test",
		})
		expect(t, r, http.StatusCreated)
		wh := r.Object(t)
		hookURL, _ := wh["webhook_url"].(string)
		require.True(t, strings.HasPrefix(hookURL, srv.URL+"/"), "webhook_url %q must be on %s", hookURL, srv.URL)
		t.Cleanup(func() { srv.Do(t, http.MethodDelete, "/v1/webhooks/"+wh["id"].(string), nil) })

		// As tempest invokes it: a form body and no token at all.
		r = call(t, anonymous, http.MethodPost, hookURL, url.Values{"name": {"qinling"}})
		expect(t, r, http.StatusAccepted)
		exID, _ := r.Object(t)["execution_id"].(string)
		require.Regexp(t, uuidRE, exID, "%s", r)
		ex := waitExecution(t, srv, exID)
		assert.Equal(t, "success", ex["status"], "%v", ex)
	})
}

// TestProjectIsolation: a member sees and touches only their project's
// functions and executions; another project's are 404, as if absent. An
// admin sees other projects only with all_projects=true.
func TestProjectIsolation(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "every caller is project 'default' on the all-in-one")
	t.Parallel()
	demo, alt := srv, srv.As(testutil.AltDemo)
	require.NotEqual(t, demo.ProjectID(t), alt.ProjectID(t))

	fid := newFunction(t, "isolated", "hello.main", map[string]string{"hello.py": helloPy})
	exID := succeeds(t, demo, fid, `{"name": "demo"}`, "Hello, demo")["id"].(string)
	altFn := createFunction(t, alt, packageForm(pythonRuntime(t), "alt-own", "hello.main",
		testutil.Zip(t, map[string]string{"hello.py": helloPy})))
	altFid := altFn["id"].(string)
	assert.Equal(t, alt.ProjectID(t), altFn["project_id"])
	altExID := succeeds(t, alt, altFid, nil, "Hello, World")["id"].(string)

	notFound := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/functions/" + fid, nil},
		{"GET", "/v1/functions/" + fid + "?download=true", nil},
		{"PUT", "/v1/functions/" + fid, url.Values{"name": {"stolen"}}},
		{"DELETE", "/v1/functions/" + fid, nil},
		{"POST", "/v1/functions/" + fid + "/versions", map[string]any{"description": nil}},
		{"POST", "/v1/executions", map[string]any{"function_id": fid, "function_version": 0, "function_alias": nil, "sync": true, "input": nil}},
		{"POST", "/v1/executions", map[string]any{"function_id": fid, "function_version": 0, "function_alias": nil, "sync": false, "input": nil}},
		{"POST", "/v1/webhooks", map[string]any{"function_id": fid, "function_version": 0, "function_alias": nil}},
		{"GET", "/v1/executions/" + exID, nil},
		{"GET", "/v1/executions/" + exID + "/log", nil},
		{"DELETE", "/v1/executions/" + exID, nil},
	}
	for _, tc := range notFound {
		r := call(t, alt, tc.method, tc.path, tc.body)
		assert.Equal(t, http.StatusNotFound, r.Status, "alt_demo %s %s must not find demo's resource: %s", tc.method, tc.path, r)
		if r.Status == http.StatusNotFound {
			r.Fault(t)
		}
	}

	listIDs := func(c *testutil.Target, path, key string) map[string]bool {
		t.Helper()
		r := call(t, c, http.MethodGet, path, nil)
		expect(t, r, http.StatusOK)
		var body map[string][]map[string]any
		r.Decode(t, &body)
		ids := map[string]bool{}
		for _, item := range body[key] {
			ids[item["id"].(string)] = true
		}
		return ids
	}
	assert.False(t, listIDs(alt, "/v1/functions", "functions")[fid], "alt_demo lists demo's function")
	assert.False(t, listIDs(alt, "/v1/executions", "executions")[exID], "alt_demo lists demo's execution")
	assert.False(t, listIDs(demo, "/v1/functions", "functions")[altFid], "demo lists alt_demo's function")
	assert.False(t, listIDs(demo, "/v1/executions", "executions")[altExID], "demo lists alt_demo's execution")
	// all_projects is the admins' switch; a member asking for it is refused
	// (TestAdminOnly), never given the other projects.

	// Nothing alt_demo tried changed demo's resources.
	r := call(t, demo, http.MethodGet, "/v1/functions/"+fid, nil)
	expect(t, r, http.StatusOK)
	assert.Equal(t, "isolated", r.Object(t)["name"])
	r = call(t, demo, http.MethodGet, "/v1/executions/"+exID, nil)
	expect(t, r, http.StatusOK)

	// Admin: its own project by default, every project with all_projects.
	assert.False(t, listIDs(admin, "/v1/functions", "functions")[fid], "admin lists demo's function without all_projects")
	all := listIDs(admin, "/v1/functions?all_projects=true", "functions")
	assert.True(t, all[fid] && all[altFid], "admin with all_projects=true must list both demo's and alt_demo's functions")
	allEx := listIDs(admin, "/v1/executions?all_projects=true", "executions")
	assert.True(t, allEx[exID] && allEx[altExID], "admin with all_projects=true must list both projects' executions")
}

// TestAdminOnly: upstream's admin-only operations are 403 "Operation not
// allowed" for a member, and change nothing.
func TestAdminOnly(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "every caller is admin on the all-in-one")
	t.Parallel()
	rt := pythonRuntime(t)
	for _, tc := range []struct {
		name, method, path string
		body               any
	}{
		{"runtime create", "POST", "/v1/runtimes", map[string]any{"image": "python3", "name": "by-member", "is_public": true, "trusted": true}},
		{"runtime delete", "DELETE", "/v1/runtimes/" + rt, nil},
		{"runtime update", "PUT", "/v1/runtimes/" + rt, map[string]any{"name": "renamed-by-member"}},
		{"runtime pool show", "GET", "/v1/runtimes/" + rt + "/pool", nil},
		{"functions of all projects", "GET", "/v1/functions?all_projects=true", nil},
		{"executions of all projects", "GET", "/v1/executions?all_projects=true", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, srv, tc.method, tc.path, tc.body)
			require.Equal(t, http.StatusForbidden, r.Status, "%s", r)
			assert.Contains(t, r.Fault(t), "Operation not allowed")
		})
	}
	r := call(t, admin, http.MethodGet, "/v1/runtimes/"+rt, nil)
	expect(t, r, http.StatusOK)
	got := r.Object(t)
	assert.Equal(t, "available", got["status"], "a refused delete leaves the runtime alone")
	assert.Equal(t, "python3", got["name"], "a refused update leaves the runtime alone")
}
