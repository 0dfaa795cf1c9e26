// Package policy holds upstream Qinling's default access rules in code and
// enforces them on the caller in a context.
//
// Upstream loaded these rules into oslo.policy from policy.json; every
// deployment we know of kept the defaults, so they are compiled in here: a
// short list of actions is admin-only and everything else is allowed to any
// authenticated caller (upstream's "default" rule compared the caller's
// project with itself, so it always passed). With auth disabled, as upstream,
// no rule is checked at all.
//
// Actions are a typed string and every one the API may check is declared
// below; Enforce refuses an action it does not know, so a typo fails loudly in
// the first test that reaches it instead of silently allowing everyone.
package policy

import (
	"context"
	"slices"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// Action names one policy-checked operation, with upstream's rule name.
type Action string

// Admin-only actions (upstream's "rule:context_is_admin").
const (
	RuntimeCreate              Action = "runtime:create"
	RuntimeUpdate              Action = "runtime:update"
	RuntimeDelete              Action = "runtime:delete"
	RuntimePoolGetAll          Action = "runtime_pool:get_all"
	FunctionGetAllAllProjects  Action = "function:get_all:all_projects"
	FunctionWorkerGetAll       Action = "function_worker:get_all"
	FunctionScaleUp            Action = "function:scale_up"
	FunctionScaleDown          Action = "function:scale_down"
	FunctionDetach             Action = "function:detach"
	FunctionVersionScaleUp     Action = "function_version:scale_up"
	FunctionVersionScaleDown   Action = "function_version:scale_down"
	FunctionVersionDetach      Action = "function_version:detach"
	ExecutionGetAllAllProjects Action = "execution:get_all:all_projects"
	WebhookGetAllAllProjects   Action = "webhook:get_all:all_projects"
	JobGetAllAllProjects       Action = "job:get_all:all_projects"
	// FunctionVersionGetAllAllProjects is, despite its name, the rule
	// upstream checks for all_projects on the alias list (GET /v1/aliases).
	FunctionVersionGetAllAllProjects Action = "function_version:get_all:all_projects"
	// UsageGetAllProjects is qinling-go's: another project's usage
	// (GET /v1/usage with project_id or all_projects).
	UsageGetAllProjects Action = "usage:get_all:all_projects"
)

// FunctionWorkerLimits is qinling-go's, admin-only: setting a function's
// min_workers and max_workers (docs/scaling.md).
const FunctionWorkerLimits Action = "function:worker_limits"

// Actions upstream checked with its "default" rule, which every
// authenticated caller passes. They are declared so that handlers can name
// them (and a later policy file can tighten them) without a string literal.
const (
	FunctionGet           Action = "function:get"
	FunctionVersionCreate Action = "function_version:create"
	FunctionVersionGetAll Action = "function_version:get_all"
	FunctionVersionGet    Action = "function_version:get"
	FunctionVersionDelete Action = "function_version:delete"
	FunctionAliasCreate   Action = "function_alias:create"
	FunctionAliasGet      Action = "function_alias:get"
	FunctionAliasUpdate   Action = "function_alias:update"
	FunctionAliasDelete   Action = "function_alias:delete"
	ExecutionCreate       Action = "execution:create"
	WebhookCreate         Action = "webhook:create"
	WebhookUpdate         Action = "webhook:update"
	WebhookDelete         Action = "webhook:delete"
)

// rule is who may perform an action.
type rule int

const (
	anyone rule = iota + 1 // any authenticated caller
	admin                  // callers holding the "admin" role
)

// rules is the whole default policy. An action missing here is unknown.
var rules = map[Action]rule{
	RuntimeCreate:                    admin,
	RuntimeUpdate:                    admin,
	RuntimeDelete:                    admin,
	RuntimePoolGetAll:                admin,
	FunctionGetAllAllProjects:        admin,
	FunctionWorkerGetAll:             admin,
	FunctionScaleUp:                  admin,
	FunctionScaleDown:                admin,
	FunctionDetach:                   admin,
	FunctionWorkerLimits:             admin,
	FunctionVersionScaleUp:           admin,
	FunctionVersionScaleDown:         admin,
	FunctionVersionDetach:            admin,
	ExecutionGetAllAllProjects:       admin,
	WebhookGetAllAllProjects:         admin,
	JobGetAllAllProjects:             admin,
	FunctionVersionGetAllAllProjects: admin, // upstream: effectively anyone (its quirk 3); fixed here
	UsageGetAllProjects:              admin,

	FunctionGet:           anyone,
	FunctionVersionCreate: anyone,
	FunctionVersionGetAll: anyone,
	FunctionVersionGet:    anyone,
	FunctionVersionDelete: anyone,
	FunctionAliasCreate:   anyone,
	FunctionAliasGet:      anyone,
	FunctionAliasUpdate:   anyone,
	FunctionAliasDelete:   anyone,
	ExecutionCreate:       anyone,
	WebhookCreate:         anyone,
	WebhookUpdate:         anyone,
	WebhookDelete:         anyone,
}

// Actions lists every known action, sorted; tests use it to check that the
// rules stay complete.
func Actions() []Action {
	out := make([]Action, 0, len(rules))
	for a := range rules {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// AdminOnly reports whether action needs the admin role.
func AdminOnly(action Action) bool { return rules[action] == admin }

// ErrNotAllowed is the denial, with upstream's message (tempest checks it).
var ErrNotAllowed = errdefs.Forbidden("Operation not allowed")

// Enforce returns nil when the caller in ctx may perform action, and a
// Forbidden error with upstream's "Operation not allowed" otherwise. With
// auth disabled it always returns nil, as upstream. An action that is not
// declared here is a bug in the caller and is refused as an internal error.
func Enforce(ctx context.Context, action Action) error {
	r, known := rules[action]
	if !known {
		return errdefs.New(errdefs.KindInternal, "policy: unknown action %q", string(action))
	}
	id := reqctx.From(ctx)
	if !id.AuthEnabled {
		return nil
	}
	if r == admin && !slices.Contains(id.Roles, "admin") {
		return ErrNotAllowed
	}
	return nil
}
