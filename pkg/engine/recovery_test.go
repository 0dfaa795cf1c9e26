package engine_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/rpc/inproc"
)

const engineStopped = "the engine stopped during the execution"

// blocker is a function that signals each start and runs until released.
type blocker struct {
	started chan string
	release chan struct{}
}

func newBlocker(t *testing.T) *blocker {
	b := &blocker{started: make(chan string, 16), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	return b
}

func (b *blocker) run(inv orchestrator.Invocation) orchestrator.Result {
	b.started <- inv.ExecutionID
	<-b.release
	return hello(inv)
}

// peer is a second engine on the same database and coordinator, with
// workers of its own.
func (h *harness) peer(t *testing.T) (*engine.Engine, *fake.Orchestrator) {
	o := fake.New(fake.Config{PoolSize: 3})
	return engine.New(h.db, o, h.coord, nil, engine.Options{Name: "peer"}, slog.New(slog.NewTextHandler(io.Discard, nil))), o
}

func start(t *testing.T, e *engine.Engine, previousRunGone bool) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, e.Start(ctx, previousRunGone))
}

// runAsync runs CreateExecution in the background and returns its outcome.
func runAsync(e *engine.Engine, a engine.ExecutionArgs) <-chan error {
	done := make(chan error, 1)
	go func() { done <- e.CreateExecution(context.Background(), a) }()
	return done
}

func requireEndedByStop(t *testing.T, h *harness, id string) {
	t.Helper()
	e, res := h.stored(t, id)
	require.Equal(t, db.StatusError, e.Status)
	require.Contains(t, res["output"], engineStopped)
}

// TestRecovery_EngineGone: an execution started by an engine that is still
// registered is left alone, by the periodic check and by a second delivery
// of its request alike; once the engine's registration is gone, either ends
// it as error with the reason, and it is never run a second time.
func TestRecovery_EngineGone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		settle func(t *testing.T, peer *engine.Engine, a engine.ExecutionArgs)
	}{
		{name: "periodic check", settle: func(t *testing.T, peer *engine.Engine, _ engine.ExecutionArgs) {
			require.NoError(t, peer.Recover(context.Background(), false))
		}},
		{name: "request delivered again", settle: func(t *testing.T, peer *engine.Engine, a engine.ExecutionArgs) {
			require.NoError(t, peer.CreateExecution(context.Background(), a))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{Name: "first"})
			b := newBlocker(t)
			h.orch.Handle("hello.main", b.run)
			peer, peerOrch := h.peer(t)
			peerOrch.Handle("hello.main", hello)
			start(t, h.eng, false)
			start(t, peer, false)
			f := h.function(t, "hello.main")
			a := h.execution(t, f)

			done := runAsync(h.eng, a)
			require.Equal(t, a.ExecutionID, <-b.started)
			e, _ := h.stored(t, a.ExecutionID)
			require.Equal(t, h.eng.Instance(), *e.Engine, "the engine that started it is recorded")

			tc.settle(t, peer, a)
			e, _ = h.stored(t, a.ExecutionID)
			require.Equal(t, db.StatusRunning, e.Status, "its engine lives: left to it")

			h.coord.Expire(h.eng.Instance())
			tc.settle(t, peer, a)
			requireEndedByStop(t, h, a.ExecutionID)
			require.Empty(t, peerOrch.Calls().Run, "never run a second time")

			// The first engine was only thought dead: its late outcome
			// does not overwrite the recorded one.
			close(b.release)
			require.NoError(t, <-done)
			requireEndedByStop(t, h, a.ExecutionID)
		})
	}
}

// TestRecovery_AllInOneRestart: at the start of an all-in-one every engine
// of the previous run is gone, lease or not: what it started ends as error,
// a synchronous execution nobody started ends as error (its caller died
// with the process), and an asynchronous one nobody started runs, once.
func TestRecovery_AllInOneRestart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, engine.Options{Name: "aio"})
	h.orch.Handle("hello.main", hello)
	f := h.function(t, "hello.main")
	started, syncQueued := h.execution(t, f), h.execution(t, f)
	ok, err := h.db.StartExecution(ctx, started.ExecutionID, "aio#previous")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, h.coord.Register(ctx, "aio#previous"), "the old lease has not expired yet")
	queued := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Input: str(`{"name":"queued"}`)}
	require.NoError(t, h.db.CreateExecution(ctx, queued))

	start(t, h.eng, true)
	requireEndedByStop(t, h, started.ExecutionID)
	e, res := h.stored(t, syncQueued.ExecutionID)
	require.Equal(t, db.StatusError, e.Status)
	require.Contains(t, res["output"], "the service stopped before the execution ended")

	tr := inproc.New(time.Minute)
	t.Cleanup(func() { tr.Close() })
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() { _ = tr.Serve(sctx, h.eng) }()
	h.eng.Replay(ctx, engine.Client{RPC: tr})
	h.eng.Replay(ctx, engine.Client{RPC: tr}) // nothing is left the second time
	deadline := time.Now().Add(time.Minute)
	for {
		e, res = h.stored(t, queued.ID)
		if e.Status != db.StatusRunning || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, db.StatusSuccess, e.Status, "%v", res)
	require.Equal(t, "Hello, queued", res["output"])
	require.Len(t, h.orch.Calls().Run, 1, "run once")
}

// TestRecovery_Drain: a clean stop lets running executions finish within
// the grace period and ends the rest as error with the reason.
func TestRecovery_Drain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		release bool
		want    string
	}{
		{name: "finishes within the grace period", grace: time.Minute, release: true, want: db.StatusSuccess},
		{name: "ended after the grace period", grace: 0, want: db.StatusError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{Name: "draining"})
			b := newBlocker(t)
			h.orch.Handle("hello.main", b.run)
			start(t, h.eng, false)
			a := h.execution(t, h.function(t, "hello.main"))
			done := runAsync(h.eng, a)
			<-b.started
			if tc.release {
				close(b.release)
			}
			h.eng.Drain(tc.grace)
			require.NoError(t, <-done)
			e, res := h.stored(t, a.ExecutionID)
			require.Equal(t, tc.want, e.Status, "%v", res)
			if tc.want == db.StatusError {
				require.Contains(t, res["output"], engineStopped)
			}
		})
	}
}

// TestRecovery_UnstartedRunsElsewhere: a request an engine received but did
// not start (it died choosing a worker) runs on the engine it comes to next.
func TestRecovery_UnstartedRunsElsewhere(t *testing.T) {
	h := newHarness(t, engine.Options{Name: "first"})
	peer, peerOrch := h.peer(t)
	peerOrch.Handle("hello.main", hello)
	start(t, peer, false)
	a := h.execution(t, h.function(t, "hello.main"))
	require.NoError(t, peer.CreateExecution(context.Background(), a))
	e, res := h.stored(t, a.ExecutionID)
	require.Equal(t, db.StatusSuccess, e.Status, "%v", res)
	require.Equal(t, peer.Instance(), *e.Engine)
	require.Equal(t, "Hello, x", res["output"])
}

// TestRecovery_InProcessSyncStart: a sync execution whose caller is in the
// engine's process (the in-process transport) is not recorded as started
// while it runs, but with its end, which then names the engine and the
// start as a recorded start would; killed while it runs, the process's
// restart ends it as error (its caller died with it), and the late outcome
// of the old run changes nothing. An async one, whose request the
// all-in-one replays, is recorded when it starts.
func TestRecovery_InProcessSyncStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync bool
		// crash restarts the all-in-one while the execution runs.
		crash          bool
		wantRecorded   bool // the start is in the row while it runs
		wantStatus     string
		wantOutputPart string
	}{
		{name: "sync: recorded with its end", sync: true, wantStatus: db.StatusSuccess, wantOutputPart: "Hello, x"},
		{name: "sync: a crash while it runs ends it at the restart", sync: true, crash: true, wantStatus: db.StatusError,
			wantOutputPart: "the service stopped before the execution ended"},
		{name: "async: recorded when it starts", wantRecorded: true, wantStatus: db.StatusSuccess, wantOutputPart: "Hello, x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, engine.Options{Name: "aio"})
			b := newBlocker(t)
			h.orch.Handle("hello.main", b.run)
			start(t, h.eng, true)
			f := h.function(t, "hello.main")
			a := h.execution(t, f)
			if !tc.sync {
				a = h.asyncExecution(t, f, "x")
			}
			tr := inproc.New(time.Minute)
			t.Cleanup(func() { tr.Close() })
			sctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			go func() { _ = tr.Serve(sctx, h.eng) }()
			done := make(chan error, 1)
			go func() {
				_, err := engine.Client{RPC: tr}.CreateExecution(ctx, a, tc.sync)
				done <- err
			}()

			require.Equal(t, a.ExecutionID, <-b.started)
			e, _ := h.stored(t, a.ExecutionID)
			require.Equal(t, db.StatusRunning, e.Status)
			require.Equal(t, tc.wantRecorded, e.Engine != nil, "start recorded while running")

			if tc.crash {
				restarted := engine.New(h.db, h.orch, h.coord, nil, engine.Options{Name: "aio"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
				start(t, restarted, true)
			}
			close(b.release)
			require.NoError(t, <-done)
			// A cast is answered before it runs: wait for its end.
			require.Eventually(t, func() bool {
				e, _ := h.stored(t, a.ExecutionID)
				return e.Status != db.StatusRunning
			}, time.Minute, 10*time.Millisecond)
			e, res := h.stored(t, a.ExecutionID)
			require.Equal(t, tc.wantStatus, e.Status)
			require.Contains(t, res["output"], tc.wantOutputPart)
			if !tc.crash {
				require.NotNil(t, e.Engine, "the ended row names its engine")
				require.Equal(t, h.eng.Instance(), *e.Engine)
				require.NotNil(t, e.StartedAt)
				require.False(t, e.StartedAt.Truncate(time.Millisecond).After(*e.UpdatedAt), "started %s, ended %s", e.StartedAt, e.UpdatedAt)
			}
		})
	}
}
