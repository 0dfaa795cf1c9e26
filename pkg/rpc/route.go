package rpc

import (
	"context"
	"errors"
)

// Routing: with an engine-local orchestrator a function's workers belong to
// one engine, so its executions should go there (pkg/engine/route.go). A
// transport that can address one engine implements EngineQueues: each
// engine consumes a queue of its own besides the shared one, and a handler
// given a request from the shared queue may answer with Forward to pass it
// on to another engine's queue. The transport then hands the request over as
// it came (the caller's reply address included), so the owner answers the
// caller directly and no handler waits for it.

// EngineQueues is implemented by transports that can route to one engine.
type EngineQueues interface {
	// ServeEngine consumes engine's own queue and dispatches to h, as Serve
	// does the shared one, until ctx ends. Requests on it are never
	// forwardable: they were routed already.
	ServeEngine(ctx context.Context, engine string, h Handler) error
}

// EngineCaller is implemented by clients that can send a call straight to
// one engine's own queue, where it is not forwardable (it was routed
// already). An engine that does not take it in time, or a queue that is
// gone, sends it on to the shared queue: it is never lost for being
// addressed to one engine.
type EngineCaller interface {
	CallEngine(ctx context.Context, engine, method string, args, reply any) error
}

// Forward, returned by a handler for a request that is Forwardable, asks the
// transport to pass the request on to Engine's own queue.
type Forward struct {
	Engine string
}

func (f *Forward) Error() string { return "request passed on to engine " + f.Engine }

type forwardableKey struct{}

// WithForwardable marks a request's context as one its handler may Forward:
// it came on the shared queue, not routed before.
func WithForwardable(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardableKey{}, true)
}

// Forwardable reports whether the request being handled may be forwarded.
func Forwardable(ctx context.Context) bool {
	ok, _ := ctx.Value(forwardableKey{}).(bool)
	return ok
}

// forwardOf returns the engine a handler's error forwards to, if any.
func forwardOf(err error) (string, bool) {
	var fw *Forward
	if errors.As(err, &fw) && fw.Engine != "" {
		return fw.Engine, true
	}
	return "", false
}
