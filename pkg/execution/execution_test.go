package execution_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/db/dbtest"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// recordingEngine takes every execution it is handed: a sync one is ended
// success at once, as an engine would before answering; fail, when set, is
// returned instead.
type recordingEngine struct {
	db   *db.DB
	fail error
	// answer, when set, is the outcome of a sync execution it answers
	// with, as an engine does since it can (engine.ExecutionOutcome).
	answer *engine.ExecutionOutcome

	mu   sync.Mutex
	args []engine.ExecutionArgs
}

func (r *recordingEngine) CreateExecution(ctx context.Context, a engine.ExecutionArgs, sync bool) (engine.ExecutionOutcome, error) {
	r.mu.Lock()
	r.args = append(r.args, a)
	r.mu.Unlock()
	if r.fail != nil {
		return engine.ExecutionOutcome{}, r.fail
	}
	if sync {
		out := `{"output": "ran", "duration": 0.01}`
		_, err := r.db.FinishExecution(ctx, a.ExecutionID, db.StatusSuccess, &out, nil)
		if r.answer != nil {
			return *r.answer, err
		}
		return engine.ExecutionOutcome{}, err
	}
	return engine.ExecutionOutcome{}, nil
}

// world is a database with two projects, each with a package function and
// an alias "prod" to it (project b's is the older), a function on a runtime
// that is still being created and an image function.
type world struct {
	db                    *db.DB
	fa, fb, creating, img string
}

func newWorld(t *testing.T) world {
	t.Helper()
	ctx := context.Background()
	d := dbtest.SQLite(t)

	ready := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusAvailable, IsPublic: true}
	require.NoError(t, d.CreateRuntime(ctx, ready))
	creating := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusCreating, IsPublic: true}
	require.NoError(t, d.CreateRuntime(ctx, creating))

	function := func(project string, runtime *db.Runtime, code db.Code) *db.Function {
		f := &db.Function{Base: db.Base{ProjectID: project}, CPU: 100, MemorySize: 33554432, Timeout: 5}
		if runtime != nil {
			f.RuntimeID = &runtime.ID
		}
		f.SetCode(code)
		require.NoError(t, d.CreateFunction(ctx, f))
		return f
	}
	pkg := db.Code{Source: db.SourcePackage, MD5Sum: "0123456789abcdef0123456789abcdef"}
	w := world{db: d}
	fb := function("b", ready, pkg)
	fa := function("a", ready, pkg)
	w.fa, w.fb = fa.ID, fb.ID
	w.creating = function("a", creating, pkg).ID
	w.img = function("a", nil, db.Code{Source: db.SourceImage, Image: "busybox"}).ID
	_, err := d.CreateFunctionVersion(ctx, fa, nil)
	require.NoError(t, err)
	for _, a := range []*db.FunctionAlias{
		{Base: db.Base{ProjectID: "b", CreatedAt: time.Now().Add(-time.Hour)}, Name: "prod", FunctionID: fb.ID},
		{Base: db.Base{ProjectID: "a"}, Name: "prod", FunctionID: fa.ID, FunctionVersion: 1},
	} {
		require.NoError(t, d.CreateFunctionAlias(ctx, a))
	}
	return w
}

func TestStart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	everywhere := db.Internal // an admin's read scope
	projectA := db.Scope{ProjectID: "a"}
	text := func(s string) *string { return &s }
	for _, tc := range []struct {
		name     string
		req      execution.Request
		kind     errdefs.Kind // of the refusal; "" when it starts
		function string       // run, when it starts
		version  int
		alias    string
	}{
		{name: "function by id", req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.fa}}, function: w.fa},
		{name: "function version", req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.fa, Version: 1}}, function: w.fa, version: 1},
		{name: "alias in the execution's project, not the older one elsewhere",
			req:      execution.Request{Project: "a", Functions: everywhere, Target: execution.Target{Alias: "prod"}},
			function: w.fa, version: 1, alias: "prod"},
		{name: "alias in a project named on purpose",
			req:      execution.Request{Project: "a", Functions: everywhere, Target: execution.Target{Alias: "prod", AliasProject: "b"}},
			function: w.fb, alias: "prod"},
		{name: "alias unknown in the execution's project", kind: errdefs.KindNotFound,
			req: execution.Request{Project: "c", Functions: everywhere, Target: execution.Target{Alias: "prod"}}},
		{name: "another project's function", kind: errdefs.KindNotFound,
			req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.fb}}},
		{name: "an admin runs another project's function", req: execution.Request{Project: "a", Functions: everywhere, Target: execution.Target{FunctionID: w.fb}}, function: w.fb},
		{name: "no target", kind: errdefs.KindInvalid, req: execution.Request{Project: "a", Functions: projectA}},
		{name: "negative version", kind: errdefs.KindInvalid,
			req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.fa, Version: -1}}},
		{name: "missing version", kind: errdefs.KindNotFound,
			req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.fa, Version: 7}}},
		{name: "version of an image function", kind: errdefs.KindInvalid,
			req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.img, Version: 1}}},
		{name: "image function has no runtime to check", req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.img}}, function: w.img},
		{name: "runtime not available", kind: errdefs.KindConflict,
			req: execution.Request{Project: "a", Functions: projectA, Target: execution.Target{FunctionID: w.creating}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := &recordingEngine{db: w.db}
			s := &execution.Starter{DB: w.db, Engine: eng, Log: slog.New(slog.DiscardHandler)}
			tc.req.Input = text("world")
			e, err := s.Start(context.Background(), tc.req)
			if tc.kind != "" {
				require.Error(t, err)
				require.Equal(t, tc.kind, errdefs.KindOf(err), "%v", err)
				require.Empty(t, eng.args, "nothing reaches the engine")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.function, *e.FunctionID)
			require.Equal(t, tc.version, e.FunctionVersion)
			if tc.alias != "" {
				require.Equal(t, tc.alias, *e.FunctionAlias)
			}
			require.Equal(t, tc.req.Project, e.ProjectID)
			require.Equal(t, db.StatusRunning, e.Status, "async comes back running")
			require.JSONEq(t, `{"__function_input": "world"}`, *e.Input, "a bare word is the positional argument")
			require.Equal(t, []engine.ExecutionArgs{{ExecutionID: e.ID, FunctionID: tc.function, FunctionVersion: tc.version, Input: []byte(*e.Input)}}, eng.args)
		})
	}
}

func TestStart_Engine(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	run := func(t *testing.T, fail error, sync bool) (*db.Execution, error) {
		eng := &recordingEngine{db: w.db, fail: fail}
		s := &execution.Starter{DB: w.db, Engine: eng, Log: slog.New(slog.DiscardHandler)}
		return s.Start(ctx, execution.Request{Project: "a", Functions: db.Scope{ProjectID: "a"}, Target: execution.Target{FunctionID: w.fa}, Sync: sync})
	}
	t.Run("sync comes back finished", func(t *testing.T) {
		e, err := run(t, nil, true)
		require.NoError(t, err)
		require.Equal(t, db.StatusSuccess, e.Status)
		require.JSONEq(t, `{"output": "ran", "duration": 0.01}`, *e.Result)
	})
	t.Run("a failing engine ends the execution as error", func(t *testing.T) {
		e, err := run(t, errdefs.New(errdefs.KindInternal, "boom"), true)
		require.NoError(t, err, "upstream answers 201 with the execution")
		require.Equal(t, db.StatusError, e.Status)
		require.JSONEq(t, `{"output": "Function execution failed: Internal server error.", "duration": 0}`, *e.Result)
	})
	t.Run("an unreachable engine is an error, and the row says so", func(t *testing.T) {
		_, err := run(t, errdefs.Unavailable("no engine"), false)
		require.True(t, errors.Is(err, errdefs.ErrUnavailable), "%v", err)
		es, err := w.db.Executions(ctx, db.Scope{ProjectID: "a"}, db.ListOptions{})
		require.NoError(t, err)
		last := es[0]
		for _, e := range es {
			if e.CreatedAt.After(last.CreatedAt) {
				last = e
			}
		}
		require.Equal(t, db.StatusError, last.Status)
	})
	t.Run("every run is counted", func(t *testing.T) {
		f, err := w.db.Function(ctx, db.Internal, w.fa)
		require.NoError(t, err)
		require.Equal(t, 3, f.Count)
	})
	t.Run("a request never sent is refused and leaves no row", func(t *testing.T) {
		before, err := w.db.Executions(ctx, db.Scope{ProjectID: "a"}, db.ListOptions{})
		require.NoError(t, err)
		for _, sync := range []bool{false, true} {
			_, err := run(t, errdefs.Wrap(errdefs.KindUnavailable, rpc.ErrNotSent, "Message broker unavailable: not connected."), sync)
			require.True(t, errors.Is(err, errdefs.ErrUnavailable), "%v", err)
		}
		after, err := w.db.Executions(ctx, db.Scope{ProjectID: "a"}, db.ListOptions{})
		require.NoError(t, err)
		require.Len(t, after, len(before), "nothing recorded, counted or billed for a refused request")
		f, err := w.db.Function(ctx, db.Internal, w.fa)
		require.NoError(t, err)
		require.Equal(t, 3, f.Count, "the refusals took back their count")
	})
}

// TestStart_EngineAnswer: a sync request carries the rows the API read and
// inserted, and the engine's answer is the execution's end, not read back;
// an engine that answers nothing (older than that) has the row read back.
func TestStart_EngineAnswer(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	// Unlike what the fake stores, so that the answer tells from a read.
	answered := `{"output": "answered", "duration": 0.02}`
	for _, tc := range []struct {
		name       string
		sync       bool
		answer     *engine.ExecutionOutcome
		wantResult *string // nil: still running
	}{
		{name: "sync, the engine answers: its answer", sync: true,
			answer: &engine.ExecutionOutcome{Status: db.StatusSuccess, Result: &answered, UpdatedAt: at}, wantResult: &answered},
		{name: "sync, the engine answers nothing: the row read back", sync: true, wantResult: strp(`{"output": "ran", "duration": 0.01}`)},
		{name: "async: no rows sent, nothing awaited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := &recordingEngine{db: w.db, answer: tc.answer}
			s := &execution.Starter{DB: w.db, Engine: eng, Log: slog.New(slog.DiscardHandler)}
			e, err := s.Start(context.Background(), execution.Request{Project: "a", Functions: db.Scope{ProjectID: "a"},
				Target: execution.Target{FunctionID: w.fa}, Sync: tc.sync, Input: strp("world")})
			require.NoError(t, err)
			require.Len(t, eng.args, 1)
			a := eng.args[0]
			if tc.sync {
				require.NotNil(t, a.Function)
				require.Equal(t, w.fa, a.Function.ID)
				require.NotNil(t, a.Execution)
				require.Equal(t, e.ID, a.Execution.ID)
				require.Equal(t, db.StatusRunning, a.Execution.Status)
				require.Nil(t, a.Execution.Input, "the input travels once, as Input")
				require.JSONEq(t, `{"__function_input": "world"}`, string(a.Input))
			} else {
				require.Nil(t, a.Function, "an async request may wait while its function changes")
				require.Nil(t, a.Execution)
			}
			if tc.wantResult == nil {
				require.Equal(t, db.StatusRunning, e.Status)
				return
			}
			require.Equal(t, db.StatusSuccess, e.Status)
			require.JSONEq(t, *tc.wantResult, *e.Result)
			require.NotNil(t, e.UpdatedAt)
			if tc.answer != nil {
				require.True(t, at.Equal(*e.UpdatedAt))
			}
		})
	}
}

func strp(s string) *string { return &s }

// TestStart_Bounds: beyond the bound on running (in flight or queued)
// executions of a function version or of a project, Start refuses with
// too-many and a Retry-After, records nothing and reaches no engine; other
// functions and projects still start.
func TestStart_Bounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		perFunction   int
		perProject    int
		second        execution.Request // after one async execution of fa in project a
		wantRefused   bool
		wantRetryHint bool
	}{
		{name: "function full", perFunction: 1,
			second: execution.Request{Project: "a", Functions: db.Internal, Target: execution.Target{FunctionID: "fa"}}, wantRefused: true},
		{name: "another version of a full function starts", perFunction: 1,
			second: execution.Request{Project: "a", Functions: db.Internal, Target: execution.Target{FunctionID: "fa", Version: 1}}},
		{name: "project full", perProject: 1,
			second: execution.Request{Project: "a", Functions: db.Internal, Target: execution.Target{FunctionID: "fb"}}, wantRefused: true},
		{name: "another project starts", perProject: 1,
			second: execution.Request{Project: "b", Functions: db.Internal, Target: execution.Target{FunctionID: "fb"}}},
		{name: "no bounds", second: execution.Request{Project: "a", Functions: db.Internal, Target: execution.Target{FunctionID: "fa"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			ids := map[string]string{"fa": w.fa, "fb": w.fb}
			eng := &recordingEngine{db: w.db}
			s := &execution.Starter{DB: w.db, Engine: eng, Log: slog.New(slog.DiscardHandler),
				MaxPerFunction: tc.perFunction, MaxPerProject: tc.perProject}
			_, err := s.Start(ctx, execution.Request{Project: "a", Functions: db.Internal, Target: execution.Target{FunctionID: w.fa}})
			require.NoError(t, err)
			tc.second.Target.FunctionID = ids[tc.second.Target.FunctionID]
			_, err = s.Start(ctx, tc.second)
			if !tc.wantRefused {
				require.NoError(t, err)
				require.Len(t, eng.args, 2)
				return
			}
			require.Equal(t, errdefs.KindTooMany, errdefs.KindOf(err), "%v", err)
			require.Positive(t, errdefs.RetryAfter(err))
			require.Contains(t, errdefs.PublicMessage(err), "try again later")
			require.Len(t, eng.args, 1, "the refused one reaches no engine")
			es, err := w.db.Executions(ctx, db.Internal, db.ListOptions{})
			require.NoError(t, err)
			require.Len(t, es, 1, "nor is it recorded")
		})
	}
}

func TestNormaliseInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{name: "object kept as typed", in: `{"name":  "x"}`, want: `{"name":  "x"}`},
		{name: "number", in: `42`, want: `{"__function_input":"42"}`},
		{name: "bare word", in: `hello`, want: `{"__function_input":"hello"}`},
		{name: "list", in: `[1, 2]`, want: `{"__function_input":"[1, 2]"}`},
		{name: "null object", in: `null`, want: `{"__function_input":"null"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := execution.NormaliseInput(&tc.in)
			require.NotNil(t, got)
			require.Equal(t, tc.want, *got)
		})
	}
	require.Nil(t, execution.NormaliseInput(nil))
	empty := ""
	require.Nil(t, execution.NormaliseInput(&empty))
}
