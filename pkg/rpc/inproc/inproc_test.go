package inproc_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/pkg/rpc/inproc"
	"github.com/qinling-go/qinling/pkg/rpc/rpctest"
)

func TestTransport_Conformance(t *testing.T) {
	rpctest.Run(t, func(t *testing.T) rpc.Transport {
		tr := inproc.New(10 * time.Second)
		t.Cleanup(func() { tr.Close() })
		return tr
	})
}

type args struct {
	N int `json:"n"`
}

func serve(t *testing.T, timeout time.Duration, h rpc.HandlerFunc) *inproc.Transport {
	tr := inproc.New(timeout)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tr.Serve(ctx, h); close(done) }()
	t.Cleanup(func() { cancel(); <-done; tr.Close() })
	return tr
}

func TestTransport(t *testing.T) {
	var casts atomic.Int32
	tr := serve(t, 2*time.Second, func(ctx context.Context, method string, raw json.RawMessage) (any, error) {
		var a args
		_ = json.Unmarshal(raw, &a)
		switch method {
		case "double":
			return map[string]any{"n": a.N * 2, "project": reqctx.From(ctx).ProjectID, "request": reqctx.From(ctx).RequestID}, nil
		case "missing":
			return nil, errdefs.NotFound("Function not found [id=%d]", a.N)
		case "cast":
			casts.Add(1)
			return nil, nil
		case "slow":
			time.Sleep(500 * time.Millisecond)
			return nil, nil
		}
		return nil, errdefs.Invalid("unknown %s", method)
	})
	ctx := reqctx.With(context.Background(), reqctx.Identity{ProjectID: "p1", RequestID: "req-1"})

	t.Run("call returns the reply and carries the identity", func(t *testing.T) {
		var out map[string]any
		require.NoError(t, tr.Call(ctx, "double", args{N: 21}, &out))
		require.Equal(t, map[string]any{"n": 42.0, "project": "p1", "request": "req-1"}, out)
	})
	t.Run("errors keep their kind and message", func(t *testing.T) {
		err := tr.Call(ctx, "missing", args{N: 7}, nil)
		require.ErrorIs(t, err, errdefs.ErrNotFound)
		require.Equal(t, "Function not found [id=7]", errdefs.PublicMessage(err))
	})
	t.Run("cast is delivered", func(t *testing.T) {
		require.NoError(t, tr.Cast(ctx, "cast", args{}))
		require.Eventually(t, func() bool { return casts.Load() == 1 }, time.Second, time.Millisecond)
	})
	t.Run("arguments that cannot be encoded fail before sending", func(t *testing.T) {
		err := tr.Cast(ctx, "cast", map[string]any{"f": func() {}})
		require.ErrorIs(t, err, errdefs.ErrInternal)
	})
}

func TestTransport_CallTimeoutAndClose(t *testing.T) {
	tr := serve(t, 100*time.Millisecond, func(ctx context.Context, method string, raw json.RawMessage) (any, error) {
		time.Sleep(time.Second)
		return nil, nil
	})
	err := tr.Call(context.Background(), "slow", nil, nil)
	require.ErrorIs(t, err, errdefs.ErrTimeout)
	tr.Close()
	err = tr.Cast(context.Background(), "x", nil)
	require.ErrorIs(t, err, errdefs.ErrUnavailable)
}

// valueHandler is a ValueHandler that records the argument values it got.
type valueHandler struct {
	got chan any
}

func (h valueHandler) Handle(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	h.got <- raw
	return nil, nil
}

func (h valueHandler) HandleValue(ctx context.Context, method string, v any) (any, error) {
	h.got <- v
	a := v.(*args)
	return &reply{Doubled: a.N * 2, Project: reqctx.From(ctx).ProjectID}, nil
}

type reply struct {
	Doubled int    `json:"doubled"`
	Project string `json:"project"`
}

// TestTransport_Values: a handler that takes Go values gets the caller's
// argument itself (no JSON in one process) and its reply is the caller's,
// with the identity carried as for any handler.
func TestTransport_Values(t *testing.T) {
	tr := inproc.New(2 * time.Second)
	t.Cleanup(func() { tr.Close() })
	ctx := reqctx.With(context.Background(), reqctx.Identity{ProjectID: "p1"})

	h := valueHandler{got: make(chan any, 100)}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = tr.Serve(sctx, h); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	require.Eventually(t, func() bool {
		var out reply
		return tr.Call(ctx, "double", &args{N: 1}, &out) == nil && out.Doubled == 2
	}, time.Second, time.Millisecond)
	for len(h.got) > 0 {
		<-h.got // the calls that found no Serve loop yet, or the first one's
	}

	sent := &args{N: 21}
	var out reply
	require.NoError(t, tr.Call(ctx, "double", sent, &out))
	require.Same(t, sent, (<-h.got).(*args), "the caller's value itself")
	require.Equal(t, reply{Doubled: 42, Project: "p1"}, out)

	require.NoError(t, tr.Cast(ctx, "double", sent))
	require.Same(t, sent, (<-h.got).(*args))
}
