package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// gate is a function whose executions named "long" run until released;
// the others answer at once.
type gate struct{ release chan struct{} }

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) handler() fake.Handler {
	return func(inv orchestrator.Invocation) orchestrator.Result {
		var in map[string]string
		_ = json.Unmarshal(inv.Input, &in)
		if in["name"] == "long" {
			<-g.release
		}
		return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
	}
}

// asyncExecution records an asynchronous execution named name.
func (h *harness) asyncExecution(t *testing.T, f *db.Function, name string) engine.ExecutionArgs {
	e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning}
	require.NoError(t, h.db.CreateExecution(context.Background(), e))
	return engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID, Input: json.RawMessage(`{"name":"` + name + `"}`)}
}

// runAll runs the executions concurrently and returns a wait for them all.
func (h *harness) runAll(all []engine.ExecutionArgs) func() {
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = h.eng.CreateExecution(context.Background(), a)
		}()
	}
	return wg.Wait
}

// TestEngine_WorkerCapIsHard: a function at its maximum workers runs at most
// function_concurrency executions per worker; the rest wait in its queue and
// all end success once the first ones finish.
func TestEngine_WorkerCapIsHard(t *testing.T) {
	for _, policy := range []string{engine.PolicyQueue, engine.PolicyUpstream} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, engine.Options{FunctionConcurrency: 2, MaxWorkers: 2, Scaling: engine.ScalingOptions{Policy: policy}})
			var running, most atomic.Int32
			release := make(chan struct{})
			h.orch.Handle("block.main", func(orchestrator.Invocation) orchestrator.Result {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				running.Add(-1)
				return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
			})
			f := h.function(t, "block.main")
			var all []engine.ExecutionArgs
			for range 9 {
				all = append(all, h.asyncExecution(t, f, "x"))
			}
			wait := h.runAll(all)
			require.Eventually(t, func() bool { return running.Load() == 4 }, 10*time.Second, 5*time.Millisecond,
				"two workers of two slots each fill up")
			ws, err := h.coord.Workers(context.Background(), coord.FunctionVersion{FunctionID: f.ID})
			require.NoError(t, err)
			require.Len(t, ws, 2, "max_workers_per_function")
			close(release)
			wait()
			require.EqualValues(t, 4, most.Load(), "never more than the cap at once")
			for _, a := range all {
				e, _ := h.stored(t, a.ExecutionID)
				require.Equal(t, db.StatusSuccess, e.Status)
			}
			require.Len(t, h.orch.Calls().Run, 9)
		})
	}
}

// TestEngine_QueueIsPulled: with one worker busy with a long execution, the
// short executions queued behind the cap run on the other worker as it frees
// up: none waits for the long one.
func TestEngine_QueueIsPulled(t *testing.T) {
	h := newHarness(t, engine.Options{FunctionConcurrency: 1, MaxWorkers: 2})
	g := newGate()
	h.orch.Handle("gate.main", g.handler())
	f := h.function(t, "gate.main")
	long := h.asyncExecution(t, f, "long")
	waitLong := h.runAll([]engine.ExecutionArgs{long})
	require.Eventually(t, func() bool { return len(h.orch.Calls().Run) == 1 }, 10*time.Second, 5*time.Millisecond)
	var shorts []engine.ExecutionArgs
	for range 6 {
		shorts = append(shorts, h.asyncExecution(t, f, "short"))
	}
	h.runAll(shorts)()
	for _, a := range shorts {
		e, _ := h.stored(t, a.ExecutionID)
		require.Equal(t, db.StatusSuccess, e.Status, "finished while the long one still runs")
	}
	e, _ := h.stored(t, long.ExecutionID)
	require.Equal(t, db.StatusRunning, e.Status)
	close(g.release)
	waitLong()
	e, _ = h.stored(t, long.ExecutionID)
	require.Equal(t, db.StatusSuccess, e.Status)
}

// TestEngine_SyncQueueWaitIsBounded: a synchronous execution waits for a
// free worker at most its function's timeout, then ends in error saying so;
// an asynchronous one behind it waits until a worker frees up.
func TestEngine_SyncQueueWaitIsBounded(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{FunctionConcurrency: 1, MaxWorkers: 1})
	g := newGate()
	h.orch.Handle("gate.main", g.handler())
	f := h.function(t, "gate.main")
	waitLong := h.runAll([]engine.ExecutionArgs{h.asyncExecution(t, f, "long")})
	require.Eventually(t, func() bool { return len(h.orch.Calls().Run) == 1 }, 10*time.Second, 5*time.Millisecond)
	// The long one runs under the 5 s it started with; the next ones get 1 s.
	require.NoError(t, h.db.UpdateFunction(ctx, f.ID, map[string]any{"timeout": 1}))
	async := h.asyncExecution(t, f, "short")
	waitAsync := h.runAll([]engine.ExecutionArgs{async})

	sync := h.execution(t, f)
	require.NoError(t, h.eng.CreateExecution(ctx, sync))
	e, res := h.stored(t, sync.ExecutionID)
	require.Equal(t, db.StatusError, e.Status)
	require.Equal(t, "Function execution failed. No worker became free within 1 s.", res["output"])

	e, _ = h.stored(t, async.ExecutionID)
	require.Equal(t, db.StatusRunning, e.Status, "the asynchronous one still waits")
	close(g.release)
	waitLong()
	waitAsync()
	e, _ = h.stored(t, async.ExecutionID)
	require.Equal(t, db.StatusSuccess, e.Status)
}

// TestEngine_ScaleDown: once fewer workers have sufficed for the window,
// idle ones go, DownStep per tick, down to the minimum (never to zero: that
// is idle expiry's). Only engine-local workers are scaled down.
func TestEngine_ScaleDown(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		local       bool
		policy      string
		min         int
		wantWorkers []int // after each tick
	}{
		{name: "one per tick down to one", local: true, wantWorkers: []int{4, 3, 2, 1, 1}},
		{name: "down to the minimum", local: true, min: 3, wantWorkers: []int{4, 3, 3}},
		{name: "upstream policy keeps them", local: true, policy: engine.PolicyUpstream, wantWorkers: []int{4, 4, 4}},
		{name: "shared workers are left to expiry", wantWorkers: []int{4, 4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			var o orchestrator.Orchestrator = h.orch
			if tc.local {
				o = localFake{h.orch}
			}
			e := engine.New(h.db, o, h.coord, nil, engine.Options{Name: "e1", MaxWorkers: 10,
				Scaling: engine.ScalingOptions{Policy: tc.policy, MinWorkers: tc.min, DownWindow: time.Nanosecond}}, discard())
			h.orch.Handle("hello.main", hello)
			f := h.function(t, "hello.main")
			require.NoError(t, e.ScaleUp(ctx, engine.FunctionArgs{FunctionID: f.ID, Count: 4}))
			fv := coord.FunctionVersion{FunctionID: f.ID}
			var got []int
			for range tc.wantWorkers {
				e.ScaleTick(ctx)
				ws, err := h.coord.Workers(ctx, fv)
				require.NoError(t, err)
				got = append(got, len(ws))
			}
			require.Equal(t, tc.wantWorkers, got)
			require.Len(t, h.orch.Calls().DeletedWorkers, 4-got[len(got)-1])
		})
	}
}

// TestEngine_SharedWorkersScaleOnce: two engines sharing an orchestrator
// (Kubernetes) and the worker records, each handed some of three concurrent
// executions, start one worker between them: the second to take the
// function's lock counts the worker the first added.
func TestEngine_SharedWorkersScaleOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Name: "e1"})
	release := make(chan struct{})
	h.orch.Handle("block.main", func(orchestrator.Invocation) orchestrator.Result {
		<-release
		return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
	})
	e2 := engine.New(h.db, h.orch, h.coord, nil, engine.Options{Name: "e2"}, discard())
	f := h.function(t, "block.main")
	var all []engine.ExecutionArgs
	var wg sync.WaitGroup
	for i := range 3 {
		a := h.asyncExecution(t, f, "x")
		all = append(all, a)
		e := h.eng
		if i == 2 {
			e = e2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.CreateExecution(ctx, a)
		}()
	}
	require.Eventually(t, func() bool { return len(h.orch.Calls().Run) == 3 }, 10*time.Second, 5*time.Millisecond)
	ws, err := h.coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID})
	require.NoError(t, err)
	require.Len(t, ws, 1)
	close(release)
	wg.Wait()
	for _, a := range all {
		e, _ := h.stored(t, a.ExecutionID)
		require.Equal(t, db.StatusSuccess, e.Status)
	}
}

// slowStart is the fake whose workers take a while to start.
type slowStart struct {
	*fake.Orchestrator
	delay time.Duration
}

func (s slowStart) ScaleUp(ctx context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	time.Sleep(s.delay)
	return s.Orchestrator.ScaleUp(ctx, fn, count)
}

// TestEngine_SyncWaitsForItsColdStart: the bound on a synchronous
// execution's wait is for busy workers to free up; a worker being started
// for it may take longer.
func TestEngine_SyncWaitsForItsColdStart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{})
	h.orch.Handle("hello.main", hello)
	e := engine.New(h.db, slowStart{h.orch, 1500 * time.Millisecond}, h.coord, nil, engine.Options{}, discard())
	f := h.function(t, "hello.main")
	require.NoError(t, h.db.UpdateFunction(ctx, f.ID, map[string]any{"timeout": 1}))
	a := h.execution(t, f)
	require.NoError(t, e.CreateExecution(ctx, a))
	ex, res := h.stored(t, a.ExecutionID)
	require.Equal(t, db.StatusSuccess, ex.Status, "%v", res)
}

// TestEngine_ReleaseLetsRunningExecutionsEnd: releasing a function's
// workers (a detach, an update) while one of its executions runs on them
// deletes them only once it has ended, and an execution that arrives
// meanwhile waits and then runs on a fresh worker. Before, the release
// killed the worker under the running execution ("the worker process died
// during the execution"), as a detach racing calls did on the real stack.
func TestEngine_ReleaseLetsRunningExecutionsEnd(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{FunctionConcurrency: 1, MaxWorkers: 2})
	release := make(chan struct{})
	var deletedUnderIt atomic.Bool
	h.orch.Handle("gate.main", func(inv orchestrator.Invocation) orchestrator.Result {
		var in map[string]string
		_ = json.Unmarshal(inv.Input, &in)
		if in["name"] == "long" {
			<-release
			deletedUnderIt.Store(len(h.orch.Calls().DeletedFunctions) > 0)
		}
		return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
	})
	f := h.function(t, "gate.main")
	fv := coord.FunctionVersion{FunctionID: f.ID}
	long := h.asyncExecution(t, f, "long")
	waitLong := h.runAll([]engine.ExecutionArgs{long})
	require.Eventually(t, func() bool { return len(h.orch.Calls().Run) == 1 }, 10*time.Second, 5*time.Millisecond)

	deleted := make(chan error, 1)
	go func() { deleted <- h.eng.DeleteFunction(ctx, f.ID, 0) }()
	require.Eventually(t, func() bool {
		recs, err := h.coord.Workers(ctx, fv)
		return err == nil && len(recs) == 0
	}, 10*time.Second, 5*time.Millisecond, "the release began")
	// What came next in the release (the orchestrator's deletion) takes
	// microseconds; give it far more before the execution may end.
	time.Sleep(100 * time.Millisecond)
	later := h.asyncExecution(t, f, "short")
	waitLater := h.runAll([]engine.ExecutionArgs{later})

	close(release)
	waitLong()
	require.NoError(t, <-deleted)
	waitLater()
	require.False(t, deletedUnderIt.Load(), "the function's workers were deleted while its execution ran")
	for _, a := range []engine.ExecutionArgs{long, later} {
		e, _ := h.stored(t, a.ExecutionID)
		require.Equal(t, db.StatusSuccess, e.Status, a.Input)
	}
	calls := h.orch.Calls()
	require.Len(t, calls.DeletedFunctions, 1)
	require.Len(t, calls.ScaleUp, 2, "the later execution's worker was started after the release")
}
