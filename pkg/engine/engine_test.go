package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/memory"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

type harness struct {
	db    *db.DB
	orch  *fake.Orchestrator
	coord *memory.Coordinator
	eng   *engine.Engine
}

func newHarness(t *testing.T, opts engine.Options) *harness {
	t.Helper()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), db.Options{})
	require.NoError(t, err)
	_, _, err = d.Sync(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	o := fake.New(fake.Config{PoolSize: 3})
	c := memory.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &harness{db: d, orch: o, coord: c, eng: engine.New(d, o, c, nil, opts, log)}
}

func str(s string) *string { return &s }

// function creates an available runtime and a package function using entry.
func (h *harness) function(t *testing.T, entry string) *db.Function {
	ctx := context.Background()
	rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "python3", Status: db.StatusCreating, IsPublic: true}
	require.NoError(t, h.db.CreateRuntime(ctx, rt))
	require.NoError(t, h.eng.CreateRuntime(ctx, rt.ID))
	f := &db.Function{Base: db.Base{ProjectID: "p"}, RuntimeID: &rt.ID, Entry: str(entry), CPU: 100, MemorySize: 33554432, Timeout: 5}
	f.SetCode(db.Code{Source: db.SourcePackage, MD5Sum: "abc"})
	require.NoError(t, h.db.CreateFunction(ctx, f))
	return f
}

// execution records a running execution the way the API does.
func (h *harness) execution(t *testing.T, f *db.Function) engine.ExecutionArgs {
	e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Sync: true}
	require.NoError(t, h.db.CreateExecution(context.Background(), e))
	return engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID, Input: json.RawMessage(`{"name":"x"}`)}
}

func (h *harness) stored(t *testing.T, id string) (*db.Execution, map[string]any) {
	e, err := h.db.Execution(context.Background(), db.Internal, id)
	require.NoError(t, err)
	var res map[string]any
	if e.Result != nil {
		require.NoError(t, json.Unmarshal([]byte(*e.Result), &res))
	}
	return e, res
}

func hello(inv orchestrator.Invocation) orchestrator.Result {
	var in map[string]string
	_ = json.Unmarshal(inv.Input, &in)
	out, _ := json.Marshal("Hello, " + in["name"])
	return orchestrator.Result{Success: true, Output: out, Duration: 0.0123456, Logs: "Hello, " + in["name"] + "\n",
		Timing: map[string]float64{"run_ms": 0.5}}
}

func TestEngine_Runtime(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, image, wantStatus string
		wantDesc                bool
	}{
		{name: "runnable image becomes available", image: "python3", wantStatus: db.StatusAvailable},
		{name: "unrunnable image is error with reason", image: "unrunnable/busybox", wantStatus: db.StatusError, wantDesc: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: tc.image, Status: db.StatusCreating}
			require.NoError(t, h.db.CreateRuntime(ctx, rt))
			_, err := h.eng.Handle(ctx, engine.MethodCreateRuntime, json.RawMessage(fmt.Sprintf(`{"runtime_id":%q}`, rt.ID)))
			require.NoError(t, err)
			got, err := h.db.Runtime(ctx, db.Internal, rt.ID)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, got.Status)
			if tc.wantDesc {
				require.NotNil(t, got.Description)
				require.Contains(t, *got.Description, "Runtime pool failed")
			}
			cp, err := h.eng.RuntimePool(ctx, rt.ID)
			if tc.wantStatus == db.StatusAvailable {
				require.NoError(t, err)
				require.Equal(t, 3, cp.Available)
			} else {
				require.ErrorIs(t, err, errdefs.ErrNotFound)
			}
		})
	}
}

func TestEngine_Execution(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		setup      func(h *harness)
		entry      string
		wantStatus string
		wantOutput string
	}{
		{name: "success stores output and log", entry: "hello.main", wantStatus: db.StatusSuccess, wantOutput: "Hello, x"},
		{name: "function failure is failed", entry: "missing.main", wantStatus: db.StatusFailed, wantOutput: `No module named "missing.main"`},
		{
			name:  "gone worker is retried elsewhere",
			entry: "hello.main",
			setup: func(h *harness) {
				h.orch.FailRuns(fmt.Errorf("dial: %w", orchestrator.ErrWorkerNotFound))
			},
			wantStatus: db.StatusSuccess, wantOutput: "Hello, x",
		},
		{
			name:  "worker dying mid-run is failed with a reason",
			entry: "hello.main",
			setup: func(h *harness) {
				h.orch.FailRuns(fmt.Errorf("reset: %w", orchestrator.ErrWorkerLost))
			},
			wantStatus: db.StatusFailed, wantOutput: "the worker process died",
		},
		{
			name:  "no capacity is error",
			entry: "hello.main",
			setup: func(h *harness) {
				h.orch.SetErrors(fake.Errors{ScaleUpErr: orchestrator.ErrNoCapacity})
			},
			wantStatus: db.StatusError, wantOutput: "Function execution failed.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			h.orch.Handle("hello.main", hello)
			f := h.function(t, tc.entry)
			if tc.setup != nil {
				tc.setup(h)
			}
			args := h.execution(t, f)
			require.NoError(t, h.eng.CreateExecution(ctx, args))
			e, res := h.stored(t, args.ExecutionID)
			require.Equal(t, tc.wantStatus, e.Status)
			require.Contains(t, res["output"], tc.wantOutput)
			require.Contains(t, res, "duration")
			timing, ok := res["timing"].(map[string]any)
			require.True(t, ok, "the result says where the time went: %v", res)
			for _, k := range []string{"queue_ms", "acquire_ms", "run_ms", "total_ms"} {
				require.GreaterOrEqual(t, timing[k], 0.0, k)
			}
			if tc.wantStatus == db.StatusSuccess {
				require.Equal(t, map[string]any{"run_ms": 0.5}, timing["worker"], "the worker's own phases")
				require.Equal(t, 0.012, res["duration"], "duration is rounded to milliseconds")
				require.NotNil(t, e.Logs)
				require.Contains(t, *e.Logs, "Hello, x")
			}
		})
	}
}

// TestEngine_PackageChecksumPerVersion: the function's md5 is its current
// package's; a version's package has its own, which the engine does not
// know, so it must not claim the current one for it (a backend that checks
// the checksum would refuse the version's package).
func TestEngine_PackageChecksumPerVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		wantMD5 string
	}{
		{name: "current package", version: 0, wantMD5: "abc"},
		{name: "version 1", version: 1, wantMD5: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			f := h.function(t, "hello.main")
			args := h.execution(t, f)
			args.FunctionVersion = tc.version
			_ = h.eng.CreateExecution(context.Background(), args)
			calls := h.orch.Calls().ScaleUp
			require.NotEmpty(t, calls)
			require.Equal(t, tc.version, calls[0].Version)
			require.Equal(t, tc.wantMD5, calls[0].MD5)
		})
	}
}

func TestEngine_UnknownFunctionIsError(t *testing.T) {
	h := newHarness(t, engine.Options{})
	e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: str("nope"), Status: db.StatusRunning}
	require.NoError(t, h.db.CreateExecution(context.Background(), e))
	require.NoError(t, h.eng.CreateExecution(context.Background(), engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: "nope"}))
	got, res := h.stored(t, e.ID)
	require.Equal(t, db.StatusError, got.Status)
	require.Contains(t, res["output"], "Function not found")
}

// TestEngine_ConcurrencyRule checks upstream's scale-up rule with the default
// function_concurrency of 3: three simultaneous executions share one worker,
// six get two.
func TestEngine_ConcurrencyRule(t *testing.T) {
	for _, tc := range []struct {
		name        string
		concurrent  int
		wantWorkers int
	}{
		{name: "three share one worker", concurrent: 3, wantWorkers: 1},
		{name: "six get two workers", concurrent: 6, wantWorkers: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{FunctionConcurrency: 3})
			release := make(chan struct{})
			h.orch.Handle("block.main", func(inv orchestrator.Invocation) orchestrator.Result {
				<-release
				return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
			})
			f := h.function(t, "block.main")
			// Record all executions first, as concurrent API requests would.
			var all []engine.ExecutionArgs
			for i := 0; i < tc.concurrent; i++ {
				all = append(all, h.execution(t, f))
			}
			wait := h.runAll(all)
			require.Eventually(t, func() bool { return len(h.orch.Calls().Run) == tc.concurrent }, 10*time.Second, 10*time.Millisecond)
			ws, err := h.coord.Workers(context.Background(), coord.FunctionVersion{FunctionID: f.ID})
			require.NoError(t, err)
			require.Len(t, ws, tc.wantWorkers)
			close(release)
			wait()
		})
	}
}

func TestEngine_ScaleDownKeepsOne(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{})
	f := h.function(t, "hello.main")
	require.NoError(t, h.eng.ScaleUp(ctx, engine.FunctionArgs{FunctionID: f.ID, Count: 3}))
	fv := coord.FunctionVersion{FunctionID: f.ID}
	ws, _ := h.coord.Workers(ctx, fv)
	require.Len(t, ws, 3)
	require.NoError(t, h.eng.ScaleDown(ctx, engine.FunctionArgs{FunctionID: f.ID, Count: 5}))
	after, _ := h.coord.Workers(ctx, fv)
	require.Len(t, after, 1)
	require.Equal(t, ws[2].Name, after[0].Name, "the oldest workers go first")
	require.Len(t, h.orch.Calls().DeletedWorkers, 2)
}

func TestEngine_ReapIdle(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Expiration: time.Hour})
	h.orch.Handle("hello.main", hello)
	idle, busy := h.function(t, "hello.main"), h.function(t, "hello.main")
	for _, f := range []*db.Function{idle, busy} {
		require.NoError(t, h.eng.CreateExecution(ctx, h.execution(t, f)))
	}
	// The idle function's last activity is two hours ago.
	require.NoError(t, h.db.UpdateFunction(ctx, idle.ID, map[string]any{}))
	require.NoError(t, h.db.SetUpdatedAt(ctx, idle.ID, time.Now().Add(-2*time.Hour)))
	require.NoError(t, h.db.CountExecution(ctx, busy.ID, 0))

	require.NoError(t, h.eng.ReapIdle(ctx))
	fvs, err := h.coord.Functions(ctx)
	require.NoError(t, err)
	require.Equal(t, []coord.FunctionVersion{{FunctionID: busy.ID}}, fvs)
	require.Contains(t, h.orch.Calls().DeletedFunctions, fake.FunctionVersion{FunctionID: idle.ID})
}

func TestEngine_UnknownMethod(t *testing.T) {
	h := newHarness(t, engine.Options{})
	_, err := h.eng.Handle(context.Background(), "frobnicate", json.RawMessage(`{}`))
	require.ErrorIs(t, err, errdefs.ErrInvalid)
	_, err = h.eng.Handle(context.Background(), engine.MethodCreateExecution, json.RawMessage(`[`))
	require.ErrorIs(t, err, errdefs.ErrInvalid)
}

func TestEngine_RedeliveredExecutionIsNotRunTwice(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{})
	h.orch.Handle("hello.main", hello)
	f := h.function(t, "hello.main")
	args := h.execution(t, f)
	require.NoError(t, h.eng.CreateExecution(ctx, args))
	require.NoError(t, h.eng.CreateExecution(ctx, args), "a second delivery of the same request")
	require.Len(t, h.orch.Calls().Run, 1)
	e, _ := h.stored(t, args.ExecutionID)
	require.Equal(t, db.StatusSuccess, e.Status)

	require.NoError(t, h.db.DeleteExecution(ctx, args.ExecutionID))
	require.NoError(t, h.eng.CreateExecution(ctx, args), "a deleted execution is skipped quietly")
	require.Len(t, h.orch.Calls().Run, 1)
}

func TestEngine_UpdateRuntime(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, image, wantImage string
	}{
		{name: "runnable image is rolled out", image: "python3.11", wantImage: "python3.11"},
		{name: "unrunnable image rolls back", image: "unrunnable/x", wantImage: "python3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			f := h.function(t, "hello.main")
			require.NoError(t, h.db.UpdateRuntime(ctx, *f.RuntimeID, map[string]any{"status": db.StatusUpgrading, "image": tc.image}))
			raw, _ := json.Marshal(engine.UpdateRuntimeArgs{RuntimeID: *f.RuntimeID, Image: tc.image, PreImage: "python3"})
			_, err := h.eng.Handle(ctx, engine.MethodUpdateRuntime, raw)
			require.NoError(t, err)
			rt, err := h.db.Runtime(ctx, db.Internal, *f.RuntimeID)
			require.NoError(t, err)
			require.Equal(t, db.StatusAvailable, rt.Status)
			require.Equal(t, tc.wantImage, rt.Image)
			_, err = h.eng.RuntimePool(ctx, rt.ID)
			require.NoError(t, err, "a pool exists after the update either way")
		})
	}
}

// localFake is the fake with the local orchestrator's property: only the
// engine that made a worker can use it.
type localFake struct{ *fake.Orchestrator }

func (localFake) EngineLocal() {}

// TestEngine_EngineLocalWorkers runs two engines that share the database and
// the worker records but each have their own orchestrator, as two engines
// with the local orchestrator do: each runs executions on its own workers.
func TestEngine_EngineLocalWorkers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Name: "engine-1"})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o1, o2 := localFake{fake.New(fake.Config{PoolSize: 2})}, localFake{fake.New(fake.Config{PoolSize: 2})}
	for _, o := range []localFake{o1, o2} {
		o.Handle("hello.main", hello)
	}
	e1 := engine.New(h.db, o1, h.coord, nil, engine.Options{Name: "engine-1"}, log)
	e2 := engine.New(h.db, o2, h.coord, nil, engine.Options{Name: "engine-2"}, log)
	f := h.function(t, "hello.main")
	// The runtime's pool was built by engine-1 only; engine-2 builds its own
	// on first use.
	require.NoError(t, e1.CreateRuntime(ctx, *f.RuntimeID))
	_, err := e2.RuntimePool(ctx, *f.RuntimeID)
	require.NoError(t, err, "pool show works whichever engine answers")

	require.NoError(t, e1.CreateExecution(ctx, h.execution(t, f)))
	require.NoError(t, e2.CreateExecution(ctx, h.execution(t, f)))
	require.NoError(t, e1.CreateExecution(ctx, h.execution(t, f)))
	ws, err := h.coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID})
	require.NoError(t, err)
	require.Len(t, ws, 2, "one worker per engine, both recorded")
	owners := map[string]bool{}
	for _, w := range ws {
		owners[w.Owner] = true
	}
	require.Equal(t, map[string]bool{"engine-1": true, "engine-2": true}, owners)
	require.Len(t, o1.Calls().Run, 2)
	require.Len(t, o2.Calls().Run, 1)
	for _, c := range o2.Calls().Run {
		require.Contains(t, o2.Workers(f.ID, 0), c.Worker, "engine-2 ran only on its own worker")
	}
}

// TestEngine_InvocationFromRow: an execution carries its function's row as
// it is when the execution runs — the entry (upstream's main.main when there
// is none), cpu, memory_size and the timeout in seconds — also to a worker
// specialised before the row changed, which Run then moves to the new
// limits (orchestrator.Orchestrator.Run).
func TestEngine_InvocationFromRow(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		entry *string
		want  string
	}{
		{name: "entry given", entry: str("pkg.handler"), want: "pkg.handler"},
		{name: "no entry is main.main", want: "main.main"},
		{name: "empty entry is main.main", entry: str(""), want: "main.main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			rt := h.function(t, "unused").RuntimeID
			f := &db.Function{Base: db.Base{ProjectID: "p"}, RuntimeID: rt, Entry: tc.entry, CPU: 100, MemorySize: 32 << 20, Timeout: 5}
			f.SetCode(db.Code{Source: db.SourcePackage, MD5Sum: "abc"})
			require.NoError(t, h.db.CreateFunction(ctx, f))

			require.NoError(t, h.eng.CreateExecution(ctx, h.execution(t, f)))
			require.NoError(t, h.db.UpdateFunction(ctx, f.ID, map[string]any{"cpu": 200, "memory_size": 64 << 20, "timeout": 7}))
			require.NoError(t, h.eng.CreateExecution(ctx, h.execution(t, f)))

			calls := h.orch.Calls()
			require.Len(t, calls.ScaleUp, 1, "the second execution reuses the worker")
			require.Len(t, calls.Run, 2)
			first, second := calls.Run[0], calls.Run[1]
			require.Equal(t, first.Worker, second.Worker)
			require.Equal(t, tc.want, first.Invocation.Entry)
			require.Equal(t, []any{100, int64(32 << 20), 5 * time.Second},
				[]any{first.Invocation.CPU, first.Invocation.MemorySize, first.Invocation.Timeout})
			require.Equal(t, []any{200, int64(64 << 20), 7 * time.Second},
				[]any{second.Invocation.CPU, second.Invocation.MemorySize, second.Invocation.Timeout})
		})
	}
}

// TestEngine_ExecutionUsage: what an execution used is in its result's
// timing and counted once in its project's usage.
func TestEngine_ExecutionUsage(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{})
	h.orch.Handle("hello.main", func(inv orchestrator.Invocation) orchestrator.Result {
		res := hello(inv)
		res.Duration, res.CPUTime, res.PeakMemory = 2, 30*time.Millisecond, 5<<20
		return res
	})
	f := h.function(t, "hello.main")
	var timings []map[string]any
	for range 2 {
		args := h.execution(t, f)
		require.NoError(t, h.eng.CreateExecution(ctx, args))
		require.NoError(t, h.eng.CreateExecution(ctx, args), "a redelivered request")
		_, res := h.stored(t, args.ExecutionID)
		timings = append(timings, res["timing"].(map[string]any))
	}
	require.Equal(t, true, timings[0]["cold_start"], "the first execution waited for a worker to be specialised")
	require.Equal(t, false, timings[1]["cold_start"], "the second found it")
	for _, tm := range timings {
		require.Equal(t, 30.0, tm["cpu_ms"])
		require.EqualValues(t, 5<<20, tm["peak_memory_bytes"])
		require.EqualValues(t, 33554432, tm["memory_size"])
		require.Equal(t, 0.0625, tm["gb_seconds"], "32 MiB for 2 s")
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	rows, err := h.db.UsageBetween(ctx, db.Scope{ProjectID: "p"}, hour, hour.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, db.UsageTotal{ProjectID: "p", FunctionID: f.ID, Executions: 2, Succeeded: 2,
		DurationMS: 4000, CPUMS: 60, MemoryKiBMS: 2 * 32 * 1024 * 2000}, rows[0])
}
