// Package rpc is how qinling-api talks to qinling-engine: request/reply calls
// and fire-and-forget casts of named methods with JSON arguments. The caller's
// identity (reqctx) travels with every message, and errors keep their errdefs
// kind across the wire. Transports live in subpackages: inproc for the
// all-in-one and, later, rabbit for RabbitMQ; pkg/backends picks one.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime/debug"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// ErrNotSent is in the chain of a Call's or Cast's error when the request
// certainly never reached the transport (the broker was not connected,
// refused it, or the write failed): no engine can ever receive it, so a
// caller may forget what it recorded for it. Other errors (a lost
// confirmation, a lost reply) leave that open.
var ErrNotSent = errors.New("the request was not sent")

// Client sends methods to some engine.
type Client interface {
	// Call sends method with args to one engine and waits for its reply,
	// which is decoded into reply (when not nil).
	Call(ctx context.Context, method string, args, reply any) error
	// Cast sends method with args to one engine without waiting. Once Cast
	// returns nil the message is the transport's to deliver.
	Cast(ctx context.Context, method string, args any) error
}

// Handler serves methods on the engine's side. The context carries the
// caller's identity; the returned value is JSON-encoded as the reply.
type Handler interface {
	Handle(ctx context.Context, method string, args json.RawMessage) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, method string, args json.RawMessage) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, method string, args json.RawMessage) (any, error) {
	return f(ctx, method, args)
}

// Transport is both ends of one RPC transport.
type Transport interface {
	Client
	// Serve consumes messages and dispatches them to h until ctx ends.
	Serve(ctx context.Context, h Handler) error
	Close() error
}

// Request is the envelope every transport carries.
type Request struct {
	Method   string          `json:"method"`
	Args     json.RawMessage `json:"args"`
	Identity reqctx.Identity `json:"context"`
}

// Response is the envelope of a call's reply.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *errdefs.Wire   `json:"error,omitempty"`
	// ForwardTo, never sent, is the engine whose queue the request is to be
	// passed on to (route.go) instead of answering it.
	ForwardTo string `json:"-"`
}

// Dispatch runs req through h the way every transport must: identity
// installed in the context, the reply JSON-encoded, the error put on the wire
// with its kind.
//
// A panicking handler becomes an internal error (logged with its stack on
// the default logger): one bad request must not take an engine down.
func Dispatch(ctx context.Context, h Handler, req Request) (resp Response) {
	defer func() {
		if r := recover(); r != nil {
			slog.Default().Error("RPC handler panicked", "method", req.Method, "request_id", req.Identity.RequestID,
				"panic", r, "stack", string(debug.Stack()))
			resp = Response{Error: errdefs.ToWire(errdefs.New(errdefs.KindInternal, "handler of %s panicked", req.Method))}
		}
	}()
	ctx = reqctx.With(ctx, req.Identity)
	out, err := h.Handle(ctx, req.Method, req.Args)
	if engine, ok := forwardOf(err); ok {
		if Forwardable(ctx) {
			return Response{ForwardTo: engine}
		}
		err = errdefs.New(errdefs.KindInternal, "handler of %s forwarded a request that cannot be", req.Method)
	}
	if err != nil {
		return Response{Error: errdefs.ToWire(err)}
	}
	if out == nil {
		return Response{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return Response{Error: errdefs.ToWire(err)}
	}
	return Response{Result: b}
}

// ReportCast logs the error of a cast: no caller waits for its answer, so
// without this a failed cast (a runtime's pool that could not be recorded,
// say) would leave no trace. Every transport calls it for its casts.
func ReportCast(req Request, resp Response) {
	if resp.Error == nil {
		return
	}
	slog.Default().Error("RPC cast failed", "method", req.Method, "request_id", req.Identity.RequestID,
		"kind", resp.Error.Kind, "error", resp.Error.Message)
}

// Decode turns a Response into the caller's reply value or error.
func (r Response) Decode(reply any) error {
	if r.Error != nil {
		return errdefs.FromWire(r.Error)
	}
	if reply == nil || len(r.Result) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result, reply)
}

// NewRequest builds the envelope for method and args, taking the identity
// from ctx.
func NewRequest(ctx context.Context, method string, args any) (Request, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return Request{}, errdefs.Wrap(errdefs.KindInternal, err, "encode arguments of %s", method)
	}
	return Request{Method: method, Args: b, Identity: reqctx.From(ctx)}, nil
}
