// Package inproc is the RPC transport of the all-in-one: API and engine in
// one process. Messages go in the envelope every transport uses, with the
// same identity propagation and error kinds as RabbitMQ, but arguments and
// replies travel as Go values (rpc.NewLocalRequest, rpc.ValueHandler): JSON
// is what a wire needs, and here it was 5 % of the CPU of a warm execution
// (docs/benchmarks.md, "Eighth round"). A request for a handler that is not
// a ValueHandler, or that waits in the queue for a Serve loop, is encoded
// before it is sent, as for a wire: arguments that cannot be encoded fail
// there.
package inproc

import (
	"context"
	"sync"
	"time"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

type envelope struct {
	req   rpc.Request
	reply chan rpc.Response // nil for a cast
	// callerDone closes when a call's caller stops waiting.
	callerDone <-chan struct{}
}

// Transport is an in-memory queue between rpc.Client and one Serve loop.
//
// While a Serve loop runs, a request does not go through the queue: the
// caller starts the handler's goroutine itself (direct), one hand-over
// fewer per call than waking the Serve loop to start it. On a small VM each
// hand-over between goroutines is a wake-up of another thread, which costs
// more than the call (docs/benchmarks.md, "The warm path: hand-overs").
// The queue holds what comes while no Serve loop runs.
type Transport struct {
	timeout time.Duration
	queue   chan envelope
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	serving *server // the running Serve loop, if any
}

// server is one running Serve loop: its handler, its context (the
// handlers') and its handlers still running, which it waits for.
type server struct {
	ctx context.Context
	h   rpc.Handler
	wg  sync.WaitGroup
}

var _ rpc.Transport = (*Transport)(nil)

// New returns a transport whose calls wait at most timeout for a reply.
func New(timeout time.Duration) *Transport {
	return &Transport{timeout: timeout, queue: make(chan envelope, 1024), done: make(chan struct{})}
}

// Call sends a request and waits for its reply.
func (t *Transport) Call(ctx context.Context, method string, args, reply any) error {
	req := rpc.NewLocalRequest(ctx, method, args)
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	env := envelope{req: req, reply: make(chan rpc.Response, 1), callerDone: ctx.Done()}
	if err := t.enqueue(ctx, env); err != nil {
		return err
	}
	select {
	case resp := <-env.reply:
		return resp.Decode(reply)
	case <-ctx.Done():
		return errdefs.Wrap(errdefs.KindTimeout, ctx.Err(), "No reply from the engine to %s in time.", method)
	case <-t.done:
		return errdefs.Unavailable("The engine is shutting down.")
	}
}

// Cast sends a request without waiting for it to be handled.
func (t *Transport) Cast(ctx context.Context, method string, args any) error {
	return t.enqueue(ctx, envelope{req: rpc.NewLocalRequest(ctx, method, args)})
}

func (t *Transport) enqueue(ctx context.Context, env envelope) error {
	// Checked first: select picks at random among ready cases, and a closed
	// transport must refuse even while its queue has room.
	select {
	case <-t.done:
		return errdefs.Unavailable("The engine is shutting down.")
	default:
	}
	if sent, err := t.direct(env); sent || err != nil {
		return err
	}
	req, err := env.req.Encoded()
	if err != nil {
		return err
	}
	env.req = req
	select {
	case t.queue <- env:
		return nil
	case <-ctx.Done():
		return errdefs.Wrap(errdefs.KindUnavailable, ctx.Err(), "The engine is not accepting requests.")
	case <-t.done:
		return errdefs.Unavailable("The engine is shutting down.")
	}
}

// direct starts env's handler at once when a Serve loop runs and has not
// stopped, and says whether it did; env's arguments are encoded first for
// a handler that takes JSON.
func (t *Transport) direct(env envelope) (bool, error) {
	t.mu.Lock()
	s := t.serving
	if s == nil || s.ctx.Err() != nil {
		t.mu.Unlock()
		return false, nil
	}
	if _, values := s.h.(rpc.ValueHandler); !values {
		req, err := env.req.Encoded()
		if err != nil {
			t.mu.Unlock()
			return false, err
		}
		env.req = req
	}
	// Under t.mu: a Serve loop that stops takes itself out under it first,
	// then waits for every handler counted here.
	s.wg.Add(1)
	t.mu.Unlock()
	go s.handle(env)
	return true, nil
}

// handle runs one request under the Serve loop's context, not the caller's,
// as it would run on a remote engine.
func (s *server) handle(env envelope) {
	defer s.wg.Done()
	hctx := s.ctx
	if env.reply != nil {
		// Delivered once, from a caller that dies with this
		// process (pkg/engine/recovery.go relies on both).
		hctx = rpc.WithLocalCaller(s.ctx, env.callerDone)
	}
	resp := rpc.Dispatch(hctx, s.h, env.req)
	if env.reply != nil {
		env.reply <- resp
	} else {
		rpc.ReportCast(env.req, resp)
	}
}

// Serve handles requests, each in its own goroutine, until ctx ends. Handlers
// run under ctx (not the caller's context), as they would on a remote engine.
func (t *Transport) Serve(ctx context.Context, h rpc.Handler) error {
	s := &server{ctx: ctx, h: h}
	t.mu.Lock()
	t.serving = s
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.serving == s {
			t.serving = nil
		}
		t.mu.Unlock()
		s.wg.Wait()
	}()
	for {
		select {
		case env := <-t.queue:
			// select picks at random among ready cases: a stopped Serve
			// must not take one more request. A cast left here is still
			// running in the database, and replayed at the next start
			// (pkg/engine/recovery.go); a call's caller is told the
			// engine is shutting down.
			if ctx.Err() != nil {
				t.putBack(env)
				return nil
			}
			s.wg.Add(1)
			go s.handle(env)
		case <-ctx.Done():
			return nil
		case <-t.done:
			return nil
		}
	}
}

// putBack returns a request a stopping Serve took, for another Serve loop
// or for Close to refuse.
func (t *Transport) putBack(env envelope) {
	select {
	case t.queue <- env:
	default:
		if env.reply != nil {
			env.reply <- rpc.Response{Error: errdefs.ToWire(errdefs.Unavailable("The engine is shutting down."))}
		}
	}
}

// Close stops the transport; pending and later calls fail as unavailable.
func (t *Transport) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}
