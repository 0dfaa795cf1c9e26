package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
)

// TestEngine_ScalingLockTaken: an execution whose load check asks for
// another worker while the function's scaling lock stays taken past the
// lock wait (another engine's slow scale-ups, or etcd restarting) runs on
// the worker that exists instead of ending in error without having started
// (found by the chaos suite on devstack); with no worker at all it ends in
// error with the reason (not running, not hung).
func TestEngine_ScalingLockTaken(t *testing.T) {
	for _, tc := range []struct {
		name       string
		workers    int
		wantStatus string
		wantOutput string
	}{
		{name: "runs on the existing worker", workers: 1, wantStatus: db.StatusSuccess, wantOutput: "Hello, x"},
		{name: "no worker is an error", workers: 0, wantStatus: db.StatusError, wantOutput: "Function execution failed. Etcd lock failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, engine.Options{FunctionConcurrency: 1, LockWait: 50 * time.Millisecond})
			h.orch.Handle("hello.main", hello)
			f := h.function(t, "hello.main")
			if tc.workers > 0 {
				require.NoError(t, h.eng.ScaleUp(ctx, engine.FunctionArgs{FunctionID: f.ID, Count: tc.workers}))
			}
			// Two running executions per worker with function_concurrency
			// 1: the load check wants another worker.
			h.execution(t, f)
			a := h.execution(t, f)
			unlock, err := h.coord.Lock(ctx, fmt.Sprintf("function_worker_%s_0", f.ID))
			require.NoError(t, err)
			defer unlock()

			require.NoError(t, h.eng.CreateExecution(ctx, a))
			e, res := h.stored(t, a.ExecutionID)
			require.Equal(t, tc.wantStatus, e.Status, "result %v", res)
			require.Contains(t, res["output"], tc.wantOutput)
			ws, err := h.coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID})
			require.NoError(t, err)
			require.Len(t, ws, tc.workers, "no worker added without the lock")
		})
	}
}

// TestEngine_RestartForgetsOwnDeadWorkers: an engine with an engine-local
// orchestrator that restarts (after kill -9: its workers died with it)
// forgets the worker records of its earlier process, and only those, so
// that its executions do not go to workers that are gone ("worker not
// found" three times was an Internal server error). Found by the chaos
// suite on devstack.
func TestEngine_RestartForgetsOwnDeadWorkers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Name: "engine-1"})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := h.function(t, "hello.main")
	fv := coord.FunctionVersion{FunctionID: f.ID}

	// The first process of engine-1 made three workers; engine-2, alive,
	// has one.
	before := localFake{fake.New(fake.Config{PoolSize: 2})}
	first := engine.New(h.db, before, h.coord, nil, engine.Options{Name: "engine-1"}, log)
	require.NoError(t, first.CreateRuntime(ctx, *f.RuntimeID))
	require.NoError(t, first.ScaleUp(ctx, engine.FunctionArgs{FunctionID: f.ID, Count: 3}))
	require.NoError(t, h.coord.AddWorker(ctx, fv, coord.WorkerRecord{Name: "engine-2-worker", Address: "fake://engine-2-worker", Owner: "engine-2"}))
	ws, err := h.coord.Workers(ctx, fv)
	require.NoError(t, err)
	require.Len(t, ws, 4)

	// engine-1 killed and started again: a new process, no workers.
	after := localFake{fake.New(fake.Config{PoolSize: 2})}
	after.Handle("hello.main", hello)
	restarted := engine.New(h.db, after, h.coord, nil, engine.Options{Name: "engine-1"}, log)
	start(t, restarted, false)
	ws, err = h.coord.Workers(ctx, fv)
	require.NoError(t, err)
	require.Len(t, ws, 1, "only engine-2's worker is left")
	require.Equal(t, "engine-2", ws[0].Owner)

	a := h.execution(t, f)
	require.NoError(t, restarted.CreateExecution(ctx, a))
	e, res := h.stored(t, a.ExecutionID)
	require.Equal(t, db.StatusSuccess, e.Status, "result %v", res)
}

// messages is a slog handler that sends each record's message on a channel.
type messages chan string

func (m messages) Enabled(context.Context, slog.Level) bool { return true }
func (m messages) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m messages) WithGroup(string) slog.Handler            { return m }
func (m messages) Handle(_ context.Context, r slog.Record) error {
	select {
	case m <- r.Message:
	default:
	}
	return nil
}

// TestEngine_RestartPoolFailureKeepsRuntimeAvailable: an engine-local
// engine that restarts and cannot build its own pool of an available
// runtime (workers too slow to start on a loaded machine) leaves the
// runtime available for the other engines; marking it error failed every
// engine's executions of it ("Runtime ... is not available."). Found by the
// chaos suite on devstack.
func TestEngine_RestartPoolFailureKeepsRuntimeAvailable(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Name: "engine-1"})
	f := h.function(t, "hello.main")
	failing := localFake{fake.New(fake.Config{PoolSize: 2, Runnable: func(string) bool { return false }})}
	logged := make(messages, 64)
	restarted := engine.New(h.db, failing, h.coord, nil, engine.Options{Name: "engine-2"}, slog.New(logged))
	start(t, restarted, false)
	for msg := range logged {
		if msg == "runtime pool not rebuilt at start; built on first use" {
			break
		}
	}
	rt, err := h.db.Runtime(ctx, db.Internal, *f.RuntimeID)
	require.NoError(t, err)
	require.Equal(t, db.StatusAvailable, rt.Status)
	require.Len(t, failing.Calls().CreatePool, 1)
}
