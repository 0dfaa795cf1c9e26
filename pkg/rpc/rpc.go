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
	"reflect"
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

// ValueHandler is a Handler that also takes a request's arguments as the
// caller's Go value, as a transport that stays in one process hands them
// (Request.Value): nothing is encoded or decoded on the way.
type ValueHandler interface {
	Handler
	// HandleValue is Handle with args as the caller passed them; its
	// reply goes back as a value too (Response.Value). Handlers must only
	// read args: the caller's own rows may be behind its pointers.
	HandleValue(ctx context.Context, method string, args any) (any, error)
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
	// Value, never sent, is the caller's argument itself when the request
	// does not leave the process (NewLocalRequest); Args is then empty.
	// JSON is what the wire transports need; within one process it was
	// 5 % of the all-in-one's CPU per warm execution (docs/benchmarks.md,
	// "Eighth round").
	Value any `json:"-"`
}

// Response is the envelope of a call's reply.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *errdefs.Wire   `json:"error,omitempty"`
	// ForwardTo, never sent, is the engine whose queue the request is to be
	// passed on to (route.go) instead of answering it.
	ForwardTo string `json:"-"`
	// Value, never sent, is the handler's reply itself, for a request that
	// came as a Value; Result is then empty.
	Value any `json:"-"`
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
	out, err := handle(ctx, h, req)
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
	if req.Value != nil {
		return Response{Value: out}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return Response{Error: errdefs.ToWire(err)}
	}
	return Response{Result: b}
}

// handle runs req through h: a Value to a ValueHandler as it is, and
// encoded for any other handler, as a wire transport would have.
func handle(ctx context.Context, h Handler, req Request) (any, error) {
	if vh, ok := h.(ValueHandler); ok && req.Value != nil {
		return vh.HandleValue(ctx, req.Method, req.Value)
	}
	req, err := req.Encoded()
	if err != nil {
		return nil, err
	}
	return h.Handle(ctx, req.Method, req.Args)
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
	if reply == nil {
		return nil
	}
	if r.Value != nil {
		return Assign(r.Value, reply)
	}
	if len(r.Result) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result, reply)
}

// Assign sets *dst, a fresh (zero) value, to src handed across in one
// process: src itself when it is of dst's type or points to one (a nil
// pointer leaves *dst as JSON's null would), and otherwise through JSON, as
// a wire transport would have decoded it. Shallow: whatever src points to
// is shared, so both sides must only read it.
func Assign(src, dst any) error {
	d := reflect.ValueOf(dst)
	if d.Kind() == reflect.Pointer && !d.IsNil() {
		s, want := reflect.ValueOf(src), d.Type().Elem()
		switch {
		case s.Type() == want:
			d.Elem().Set(s)
			return nil
		case s.Kind() == reflect.Pointer && s.Type().Elem() == want:
			if !s.IsNil() {
				d.Elem().Set(s.Elem())
			}
			return nil
		}
	}
	b, err := json.Marshal(src)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

// NewLocalRequest builds the envelope for a transport that stays in one
// process: args travel as they are (Request.Value), not encoded, unless
// the handler takes JSON (Encoded).
func NewLocalRequest(ctx context.Context, method string, args any) Request {
	if args == nil {
		return Request{Method: method, Args: json.RawMessage("null"), Identity: reqctx.From(ctx)}
	}
	return Request{Method: method, Value: args, Identity: reqctx.From(ctx)}
}

// Encoded is r with its Value encoded into Args, for a handler that takes
// JSON.
func (r Request) Encoded() (Request, error) {
	if r.Value == nil {
		return r, nil
	}
	b, err := json.Marshal(r.Value)
	if err != nil {
		return Request{}, errdefs.Wrap(errdefs.KindInternal, err, "encode arguments of %s", r.Method)
	}
	r.Args, r.Value = b, nil
	return r, nil
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
