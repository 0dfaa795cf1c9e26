// Package reqctx carries the caller's identity and request ID through a
// context.Context, from the API's middleware, across RPC, into the engine.
package reqctx

import (
	"context"
	"log/slog"
	"slices"
)

// DefaultProject is the project every caller belongs to when auth is off, as upstream.
const DefaultProject = "default"

// Identity is who asked, as established by authentication.
type Identity struct {
	RequestID string   `json:"request_id"`
	ProjectID string   `json:"project_id"`
	UserID    string   `json:"user_id,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	AuthToken string   `json:"auth_token,omitempty"`
	// AuthEnabled is false in no-auth mode, where upstream skips every policy check.
	AuthEnabled bool `json:"auth_enabled"`
}

// IsAdmin follows upstream: a caller is admin when it holds the role named "admin",
// and everyone is when auth is off.
func (i Identity) IsAdmin() bool {
	return !i.AuthEnabled || slices.Contains(i.Roles, "admin")
}

type key struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// From returns the identity in ctx; without one it is the no-auth default identity.
func From(ctx context.Context) Identity {
	if id, ok := ctx.Value(key{}).(Identity); ok {
		return id
	}
	return Identity{ProjectID: DefaultProject}
}

// Logger returns l with the request ID of ctx attached, so every line of one
// request can be found together.
func Logger(ctx context.Context, l *slog.Logger) *slog.Logger {
	if id := From(ctx); id.RequestID != "" {
		return l.With("request_id", id.RequestID)
	}
	return l
}
