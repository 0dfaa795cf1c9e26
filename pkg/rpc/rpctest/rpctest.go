// Package rpctest is the conformance suite every rpc.Transport passes: the
// in-process one and RabbitMQ alike, so the all-in-one and a distributed
// deployment behave the same to the API and the engine.
//
//	func TestTransport(t *testing.T) {
//		rpctest.Run(t, func(t *testing.T) rpc.Transport {
//			tr := inproc.New(10 * time.Second)
//			t.Cleanup(func() { tr.Close() })
//			return tr
//		})
//	}
package rpctest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// How long the suite waits for things that should be quick. Generous, as a
// loaded CI machine is slow; a hang still fails.
const (
	patience = 10 * time.Second
	// fast is how long a failure that must not hang may take.
	fast = 3 * time.Second
)

// Run runs the suite. newTransport is called once per subtest and must
// return a transport of its own: no other transport's messages in its
// queue, a call timeout of a few seconds at least, a Close registered with
// t.Cleanup (the suite may close it earlier; Close must be idempotent).
// Several Serve loops on one transport must compete for its messages.
func Run(t *testing.T, newTransport func(t *testing.T) rpc.Transport) {
	t.Run("call returns the reply and carries the identity", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, echo)
		id := reqctx.Identity{
			RequestID: "req-1", ProjectID: "p1", UserID: "u1", Roles: []string{"member", "admin"},
			AuthToken: "token-1", AuthEnabled: true,
		}
		var out echoReply
		require.NoError(t, tr.Call(reqctx.With(context.Background(), id), "echo", echoArgs{N: 21, S: "héllo"}, &out))
		assert.Equal(t, echoReply{Method: "echo", N: 42, S: "héllo", Identity: id}, out)
	})

	t.Run("call without an identity gets the default one", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, echo)
		var out echoReply
		require.NoError(t, tr.Call(context.Background(), "echo", echoArgs{N: 1}, &out))
		assert.Equal(t, reqctx.From(context.Background()), out.Identity)
	})

	t.Run("empty replies and ignored replies", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			if method == "nothing" {
				return nil, nil
			}
			return map[string]int{"n": 1}, nil
		})
		out := map[string]int{"kept": 7}
		require.NoError(t, tr.Call(context.Background(), "nothing", nil, &out))
		assert.Equal(t, map[string]int{"kept": 7}, out, "a nil result leaves the reply alone")
		require.NoError(t, tr.Call(context.Background(), "something", nil, nil), "a nil reply ignores the result")
	})

	t.Run("errors keep their kind and message", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			switch method {
			case "plain":
				return nil, errors.New("disk /var/lib/secret is full")
			case "deadline":
				return nil, fmt.Errorf("run: %w", context.DeadlineExceeded)
			case "wrapped":
				return nil, fmt.Errorf("get function f1: %w", errdefs.NotFound("Function f1 not found."))
			}
			var a struct{ Kind errdefs.Kind }
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, err
			}
			return nil, errdefs.New(a.Kind, "It failed as %s [id=7].", a.Kind)
		})
		for _, kind := range errdefs.Kinds() {
			t.Run(string(kind), func(t *testing.T) {
				err := tr.Call(context.Background(), "fail", map[string]any{"Kind": kind}, nil)
				require.Error(t, err)
				assert.Equal(t, kind, errdefs.KindOf(err))
				want := fmt.Sprintf("It failed as %s [id=7].", kind)
				if kind == errdefs.KindInternal {
					want = "Internal server error."
				}
				assert.Equal(t, want, errdefs.PublicMessage(err))
			})
		}
		for _, tc := range []struct {
			method string
			kind   errdefs.Kind
			msg    string
		}{
			{method: "plain", kind: errdefs.KindInternal, msg: "Internal server error."},
			{method: "deadline", kind: errdefs.KindTimeout, msg: "The operation timed out."},
			{method: "wrapped", kind: errdefs.KindNotFound, msg: "Function f1 not found."},
		} {
			t.Run(tc.method, func(t *testing.T) {
				err := tr.Call(context.Background(), tc.method, nil, nil)
				require.Error(t, err)
				assert.Equal(t, tc.kind, errdefs.KindOf(err))
				assert.Equal(t, tc.msg, errdefs.PublicMessage(err))
				assert.NotContains(t, err.Error(), "/var/lib/secret", "an internal cause must not cross the wire")
			})
		}
	})

	t.Run("arguments that cannot be encoded fail before sending", func(t *testing.T) {
		tr := newTransport(t)
		for _, send := range []func() error{
			func() error { return tr.Call(context.Background(), "x", map[string]any{"f": func() {}}, nil) },
			func() error { return tr.Cast(context.Background(), "x", map[string]any{"f": func() {}}) },
		} {
			assert.ErrorIs(t, send(), errdefs.ErrInternal)
		}
	})

	t.Run("casts are delivered exactly once", func(t *testing.T) {
		tr := newTransport(t)
		seen := newCounter()
		serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			var a echoArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, err
			}
			seen.add(fmt.Sprintf("%s/%d/%s", method, a.N, reqctx.From(ctx).RequestID))
			return nil, nil
		})
		const n = 20
		want := map[string]int{}
		for i := range n {
			ctx := reqctx.With(context.Background(), reqctx.Identity{ProjectID: "p", RequestID: fmt.Sprint("r", i)})
			require.NoError(t, tr.Cast(ctx, "note", echoArgs{N: i}))
			want[fmt.Sprintf("note/%d/r%d", i, i)] = 1
		}
		seen.waitTotal(t, n)
		time.Sleep(200 * time.Millisecond) // room for a duplicate to show up
		assert.Equal(t, want, seen.snapshot())
	})

	t.Run("casts go to one of several Serve loops", func(t *testing.T) {
		tr := newTransport(t)
		seen := newCounter()
		for _, name := range []string{"a", "b"} {
			serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
				var a echoArgs
				if err := json.Unmarshal(args, &a); err != nil {
					return nil, err
				}
				seen.add(fmt.Sprint(a.N))
				seen.add("server " + name)
				return nil, nil
			})
		}
		const n = 20
		for i := range n {
			require.NoError(t, tr.Cast(context.Background(), "note", echoArgs{N: i}))
		}
		seen.waitTotal(t, 2*n)
		time.Sleep(200 * time.Millisecond)
		got := seen.snapshot()
		for i := range n {
			assert.Equal(t, 1, got[fmt.Sprint(i)], "cast %d", i)
		}
		assert.Equal(t, n, got["server a"]+got["server b"])
	})

	t.Run("a call without a reply in time is a timeout", func(t *testing.T) {
		tr := newTransport(t)
		release := make(chan struct{})
		defer close(release)
		serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "late", nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := tr.Call(ctx, "slow", nil, nil)
		require.ErrorIs(t, err, errdefs.ErrTimeout)
		assert.Less(t, time.Since(start), fast)
		assert.NotEmpty(t, errdefs.PublicMessage(err))
	})

	t.Run("concurrent calls get their own replies", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, echo)
		const n = 100
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := reqctx.With(context.Background(), reqctx.Identity{ProjectID: fmt.Sprint("p", i)})
				var out echoReply
				if err := tr.Call(ctx, "echo", echoArgs{N: i}, &out); err != nil {
					errs <- err
					return
				}
				if out.N != 2*i || out.Identity.ProjectID != fmt.Sprint("p", i) {
					errs <- fmt.Errorf("call %d got %+v", i, out)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("large arguments and replies", func(t *testing.T) {
		tr := newTransport(t)
		serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			var s string
			if err := json.Unmarshal(args, &s); err != nil {
				return nil, err
			}
			sum := sha256.Sum256([]byte(s))
			return map[string]string{"sum": hex.EncodeToString(sum[:]), "echo": s}, nil
		})
		big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
		sum := sha256.Sum256([]byte(big))
		var out map[string]string
		require.NoError(t, tr.Call(context.Background(), "big", big, &out))
		assert.Equal(t, hex.EncodeToString(sum[:]), out["sum"])
		assert.True(t, out["echo"] == big, "the 1 MiB reply differs")
	})

	t.Run("Serve returns when its context ends", func(t *testing.T) {
		tr := newTransport(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Serve(ctx, rpc.HandlerFunc(echo)) }()
		var out echoReply
		require.NoError(t, tr.Call(context.Background(), "echo", echoArgs{N: 1}, &out))
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(patience):
			t.Fatal("Serve did not return after its context ended")
		}
	})

	t.Run("Close fails pending and later requests as unavailable", func(t *testing.T) {
		tr := newTransport(t)
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		serveDone := make(chan struct{})
		go func() {
			_ = tr.Serve(context.Background(), rpc.HandlerFunc(func(ctx context.Context, method string, args json.RawMessage) (any, error) {
				started <- struct{}{}
				<-release
				return nil, nil
			}))
			close(serveDone)
		}()
		pending := make(chan error, 1)
		go func() { pending <- tr.Call(context.Background(), "block", nil, nil) }()
		select {
		case <-started:
		case <-time.After(patience):
			t.Fatal("the handler did not start")
		}
		closed := make(chan struct{})
		go func() { _ = tr.Close(); close(closed) }()
		select {
		case err := <-pending:
			assert.ErrorIs(t, err, errdefs.ErrUnavailable)
		case <-time.After(fast):
			t.Fatal("a call waiting for its reply did not fail when the transport closed")
		}
		close(release)
		for _, ch := range []chan struct{}{closed, serveDone} {
			select {
			case <-ch:
			case <-time.After(patience):
				t.Fatal("Close or Serve did not return")
			}
		}
		for _, send := range []func() error{
			func() error { return tr.Call(context.Background(), "x", nil, nil) },
			func() error { return tr.Cast(context.Background(), "x", nil) },
		} {
			start := time.Now()
			assert.ErrorIs(t, send(), errdefs.ErrUnavailable)
			assert.Less(t, time.Since(start), fast)
		}
		assert.NoError(t, tr.Close(), "a second Close")
		assert.NoError(t, tr.Serve(context.Background(), rpc.HandlerFunc(echo)), "Serve after Close returns at once")
	})
}

type echoArgs struct {
	N int    `json:"n"`
	S string `json:"s,omitempty"`
}

type echoReply struct {
	Method   string          `json:"method"`
	N        int             `json:"n"`
	S        string          `json:"s,omitempty"`
	Identity reqctx.Identity `json:"identity"`
}

// echo doubles n and sends back what it saw.
func echo(ctx context.Context, method string, args json.RawMessage) (any, error) {
	var a echoArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, errdefs.Invalid("bad arguments: %v", err)
	}
	return echoReply{Method: method, N: 2 * a.N, S: a.S, Identity: reqctx.From(ctx)}, nil
}

// serve runs a Serve loop on tr until the test ends, and checks it returns.
func serve(t *testing.T, tr rpc.Transport, h rpc.HandlerFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Serve")
		case <-time.After(patience):
			t.Error("Serve did not return after its context ended")
		}
	})
}

// counter counts what handlers saw, from any goroutine.
type counter struct {
	mu   sync.Mutex
	seen map[string]int
	n    int
}

func newCounter() *counter { return &counter{seen: map[string]int{}} }

func (c *counter) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[key]++
	c.n++
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

func (c *counter) waitTotal(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.n >= n
	}, patience, 5*time.Millisecond, "handlers saw fewer messages than sent")
}
