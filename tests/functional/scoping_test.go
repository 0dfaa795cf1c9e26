//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/keystone/keystonetest"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestAliasNamesStayInTheirProject replays a reported defect: a member
// makes alias "prod" first; an admin who then names "prod" got the member's
// alias, the oldest of that name in any project — the admin's execution ran
// the member's function with the admin's input, and the admin's update and
// delete changed and removed the member's alias. A name is now looked up in
// the caller's project, admins included, unless project_id names another.
func TestAliasNamesStayInTheirProject(t *testing.T) {
	t.Parallel()
	member, memberProject, adm, adminProject, rt := twoProjects(t)
	name := "prod-" + uuid.NewString()[:8]
	source := func(who string) map[string]string {
		return map[string]string{"owner.py": fmt.Sprintf("def main(**kwargs):\n    return %q + repr(kwargs.get(\"secret\"))\n", who)}
	}
	memberFn := createFunction(t, member, packageForm(rt, "victim", "owner.main", testutil.Zip(t, source("member:"))))["id"].(string)
	adminFn := createFunction(t, adm, packageForm(rt, "admin-own", "owner.main", testutil.Zip(t, source("admin:"))))["id"].(string)

	newAlias := func(as *testutil.Target, fid, description string) {
		r := call(t, as, http.MethodPost, "/v1/aliases", map[string]any{"name": name, "function_id": fid, "function_version": 0, "description": description})
		expect(t, r, http.StatusCreated)
		t.Cleanup(func() { as.Do(t, http.MethodDelete, "/v1/aliases/"+name, nil) })
	}
	newAlias(member, memberFn, "the member's") // the oldest "prod"
	newAlias(adm, adminFn, "the admin's")

	// The admin runs "prod" with their input: their own function runs.
	r := call(t, adm, http.MethodPost, "/v1/executions", map[string]any{
		"function_id": nil, "function_version": nil, "function_alias": name, "sync": true, "input": `{"secret": 1}`,
	})
	expect(t, r, http.StatusCreated)
	ex := r.Object(t)
	assert.Equal(t, adminFn, ex["function_id"], "the admin's alias must run the admin's function")
	assert.Equal(t, adminProject, ex["project_id"])
	out, _ := result(t, ex)
	assert.Equal(t, "admin:1", out, "the admin's input goes to the admin's function: %v", ex)

	// The admin's update and delete touch the admin's alias only.
	r = call(t, adm, http.MethodPut, "/v1/aliases/"+name, map[string]any{"function_id": nil, "function_version": nil, "description": "changed by the admin"})
	expect(t, r, http.StatusOK)
	assert.Equal(t, adminProject, r.Object(t)["project_id"])
	expect(t, call(t, adm, http.MethodDelete, "/v1/aliases/"+name, nil), http.StatusNoContent)
	expect(t, call(t, adm, http.MethodGet, "/v1/aliases/"+name, nil), http.StatusNotFound)
	r = call(t, member, http.MethodGet, "/v1/aliases/"+name, nil)
	expect(t, r, http.StatusOK)
	mine := r.Object(t)
	assert.Equal(t, "the member's", mine["description"], "the member's alias was changed: %v", mine)
	assert.Equal(t, memberFn, mine["function_id"])

	// With its own alias gone, the admin's "prod" is not found, never the
	// member's; naming the member's project reaches it on purpose.
	r = call(t, adm, http.MethodPost, "/v1/executions", map[string]any{"function_alias": name, "sync": false})
	expect(t, r, http.StatusNotFound)
	onPurpose := "/v1/aliases/" + name + "?" + url.Values{"project_id": {memberProject}}.Encode()
	r = call(t, adm, http.MethodGet, onPurpose, nil)
	expect(t, r, http.StatusOK)
	assert.Equal(t, memberFn, r.Object(t)["function_id"])

	// A member cannot name another project.
	r = call(t, member, http.MethodGet, "/v1/aliases/"+name+"?"+url.Values{"project_id": {adminProject}}.Encode(), nil)
	expect(t, r, http.StatusForbidden)
	assert.Contains(t, r.Fault(t), "Operation not allowed")
}

// twoProjects returns a member of one project and an admin of another, each
// with their project, and a public python3 runtime both can use, on an API
// with authentication on: the devstack stack's demo and admin, or else a
// private all-in-one started with authentication on against a fake Keystone.
func twoProjects(t *testing.T) (member *testutil.Target, memberProject string, adm *testutil.Target, adminProject, runtimeID string) {
	t.Helper()
	if srv.Real() {
		return srv, srv.ProjectID(t), admin, admin.ProjectID(t), pythonRuntime(t)
	}
	ks := keystonetest.New(t)
	ks.Add("member-token", keystonetest.Token{ProjectID: "proj-member", UserID: "member", Roles: []string{"member", "reader"}})
	ks.Add("admin-token", keystonetest.Token{ProjectID: "proj-admin", UserID: "admin", Roles: []string{"admin", "member", "reader"}})
	s := testutil.StartAllInOne(t,
		testutil.WithConfig("pecan", "auth_enable", "true"),
		testutil.WithConfig("keystone_authtoken", "www_authenticate_uri", ks.URL))
	base := testutil.ServerTarget(s)
	member, adm = base.WithToken("member-token"), base.WithToken("admin-token")
	rt := waitRuntime(t, adm, createRuntime(t, adm, "python3", "python3")["id"].(string))
	require.Equal(t, "available", rt["status"], "python3 runtime: %v", rt)
	return member, "proj-member", adm, "proj-admin", rt["id"].(string)
}
