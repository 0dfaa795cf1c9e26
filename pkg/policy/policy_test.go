package policy_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// adminOnly is upstream's list of context_is_admin rules plus the fixed alias
// one, written out again so that a change to the table is a visible change.
var adminOnly = []policy.Action{
	"runtime:create", "runtime:update", "runtime:delete", "runtime_pool:get_all",
	"function:get_all:all_projects", "function_worker:get_all",
	"function:scale_up", "function:scale_down", "function:detach",
	"function_version:scale_up", "function_version:scale_down", "function_version:detach",
	"execution:get_all:all_projects", "webhook:get_all:all_projects", "job:get_all:all_projects",
	"function_version:get_all:all_projects",
	// qinling-go's own: another project's usage (GET /v1/usage), a
	// function's worker bounds.
	"usage:get_all:all_projects", "function:worker_limits",
}

func ctxWith(id reqctx.Identity) context.Context { return reqctx.With(context.Background(), id) }

func TestEnforce(t *testing.T) {
	t.Parallel()
	member := reqctx.Identity{ProjectID: "p", Roles: []string{"member", "reader"}, AuthEnabled: true}
	admin := reqctx.Identity{ProjectID: "p", Roles: []string{"reader", "admin"}, AuthEnabled: true}
	noAuth := reqctx.Identity{ProjectID: reqctx.DefaultProject}
	for _, tc := range []struct {
		name   string
		id     reqctx.Identity
		action policy.Action
		denied bool
	}{
		{name: "member may not create runtimes", id: member, action: policy.RuntimeCreate, denied: true},
		{name: "member may not list all projects' functions", id: member, action: policy.FunctionGetAllAllProjects, denied: true},
		{name: "member may not list all projects' aliases (upstream quirk fixed)", id: member, action: policy.FunctionVersionGetAllAllProjects, denied: true},
		{name: "member may create executions", id: member, action: policy.ExecutionCreate},
		{name: "member may create webhooks", id: member, action: policy.WebhookCreate},
		{name: "admin may create runtimes", id: admin, action: policy.RuntimeCreate},
		{name: "admin may see pools", id: admin, action: policy.RuntimePoolGetAll},
		{name: "no-auth skips policy", id: noAuth, action: policy.RuntimeDelete},
		{name: "role names are exact", id: reqctx.Identity{Roles: []string{"Admin", "administrator"}, AuthEnabled: true}, action: policy.RuntimeCreate, denied: true},
		{name: "no roles at all", id: reqctx.Identity{AuthEnabled: true}, action: policy.JobGetAllAllProjects, denied: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := policy.Enforce(ctxWith(tc.id), tc.action)
			if !tc.denied {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, errdefs.ErrForbidden)
			require.Equal(t, http.StatusForbidden, errdefs.HTTPStatus(err))
			require.Equal(t, "Operation not allowed", errdefs.PublicMessage(err))
		})
	}
}

func TestEnforce_AdminOnlyTable(t *testing.T) {
	t.Parallel()
	member := ctxWith(reqctx.Identity{ProjectID: "p", Roles: []string{"member"}, AuthEnabled: true})
	admin := ctxWith(reqctx.Identity{ProjectID: "p", Roles: []string{"admin"}, AuthEnabled: true})
	want := map[policy.Action]bool{}
	for _, a := range adminOnly {
		want[a] = true
	}
	for _, a := range policy.Actions() {
		t.Run(string(a), func(t *testing.T) {
			require.Equal(t, want[a], policy.AdminOnly(a))
			require.NoError(t, policy.Enforce(admin, a))
			if want[a] {
				require.ErrorIs(t, policy.Enforce(member, a), errdefs.ErrForbidden)
			} else {
				require.NoError(t, policy.Enforce(member, a))
			}
		})
	}
	for _, a := range adminOnly {
		require.Contains(t, policy.Actions(), a, "admin-only action missing from the rules")
	}
}

// TestEnforce_UnknownAction: a typo cannot silently allow everyone, even
// with auth off where known actions are never checked.
func TestEnforce_UnknownAction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   reqctx.Identity
	}{
		{name: "admin", id: reqctx.Identity{Roles: []string{"admin"}, AuthEnabled: true}},
		{name: "no auth", id: reqctx.Identity{ProjectID: reqctx.DefaultProject}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := policy.Enforce(ctxWith(tc.id), "runtime:creat")
			require.Equal(t, errdefs.KindInternal, errdefs.KindOf(err))
			require.ErrorContains(t, err, `policy: unknown action "runtime:creat"`)
		})
	}
}
