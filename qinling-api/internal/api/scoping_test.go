package api_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAPI_AliasNamesStayInTheirProject: an alias name is looked up in the
// caller's project, admins included (upstream gave an admin the oldest
// alias of that name in any project), unless an admin names another
// project with project_id.
func TestAPI_AliasNamesStayInTheirProject(t *testing.T) {
	t.Parallel()
	base, _ := newAuthServer(t)
	rt := createRuntimeAs(t, base, adminToken)
	fa, fa2 := createFunctionAs(t, base, aliceToken, rt), createFunctionAs(t, base, aliceToken, rt)
	fadmin := createFunctionAs(t, base, adminToken, rt)
	alias := func(token, name, fid, description string) {
		r := callJSON(t, token, "POST", base+"/v1/aliases", fmt.Sprintf(`{"name": %q, "function_id": %q, "description": %q}`, name, fid, description))
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
	}
	alias(aliceToken, "prod", fa, "alice's") // the oldest "prod"
	alias(adminToken, "prod", fadmin, "admin's")
	alias(aliceToken, "only-alice", fa2, "alice's")

	for _, tc := range []struct {
		name, token, method, path, body string
		status                          int
		function, project, description  string // of the alias or execution answered
	}{
		{name: "admin reads its own alias", token: adminToken, method: "GET", path: "/v1/aliases/prod", status: 200, function: fadmin, project: "proj-admin"},
		{name: "admin runs its own alias", token: adminToken, method: "POST", path: "/v1/executions",
			body: `{"function_alias": "prod", "sync": false}`, status: 201, function: fadmin, project: "proj-admin"},
		{name: "admin updates its own alias", token: adminToken, method: "PUT", path: "/v1/aliases/prod",
			body: `{"description": "changed"}`, status: 200, function: fadmin, project: "proj-admin", description: "changed"},
		{name: "alice's alias is untouched", token: aliceToken, method: "GET", path: "/v1/aliases/prod", status: 200, function: fa, project: "proj-a", description: "alice's"},
		{name: "admin: another project's name is not found", token: adminToken, method: "GET", path: "/v1/aliases/only-alice", status: 404},
		{name: "admin cannot run another project's alias by name", token: adminToken, method: "POST", path: "/v1/executions",
			body: `{"function_alias": "only-alice"}`, status: 404},
		{name: "admin cannot delete another project's alias by name", token: adminToken, method: "DELETE", path: "/v1/aliases/only-alice", status: 404},
		{name: "admin names the project", token: adminToken, method: "GET", path: "/v1/aliases/only-alice?project_id=proj-a", status: 200, function: fa2, project: "proj-a"},
		{name: "admin runs a named project's alias", token: adminToken, method: "POST", path: "/v1/executions?project_id=proj-a",
			body: `{"function_alias": "only-alice", "sync": false}`, status: 201, function: fa2, project: "proj-admin"},
		{name: "member may not name another project", token: aliceToken, method: "GET", path: "/v1/aliases/prod?project_id=proj-admin", status: 403},
		{name: "member naming its own project", token: aliceToken, method: "GET", path: "/v1/aliases/prod?project_id=proj-a", status: 200, function: fa, project: "proj-a"},
		{name: "bob has no prod", token: bobToken, method: "POST", path: "/v1/executions", body: `{"function_alias": "prod"}`, status: 404},
		{name: "bob's webhook cannot use alice's alias", token: bobToken, method: "POST", path: "/v1/webhooks", body: `{"function_alias": "only-alice"}`, status: 404},
		{name: "bob's job cannot use alice's alias", token: bobToken, method: "POST", path: "/v1/jobs",
			body: `{"function_alias": "only-alice", "pattern": "@daily"}`, status: 404},
		{name: "admin deletes its own alias", token: adminToken, method: "DELETE", path: "/v1/aliases/prod", status: 204},
		{name: "alice's alias survives", token: aliceToken, method: "GET", path: "/v1/aliases/prod", status: 200, function: fa, project: "proj-a", description: "alice's"},
		{name: "with its own gone, the admin's prod is not alice's", token: adminToken, method: "GET", path: "/v1/aliases/prod", status: 404},
	} {
		// In order: the cases build on each other.
		t.Run(tc.name, func(t *testing.T) {
			r := callJSON(t, tc.token, tc.method, base+tc.path, tc.body)
			require.Equal(t, tc.status, r.status, string(r.body))
			if r.status >= 400 {
				require.NotEmpty(t, r.json(t)["faultstring"])
			}
			if tc.function == "" {
				return
			}
			got := r.json(t)
			require.Equal(t, tc.function, got["function_id"])
			require.Equal(t, tc.project, got["project_id"])
			if tc.description != "" {
				require.Equal(t, tc.description, got["description"])
			}
		})
	}
}
