package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// What an execution says when its engine could not finish it
// (docs/reliability.md).
const (
	msgEngineStopped = "Function execution failed: the engine stopped during the execution."
	msgNoCaller      = "Function execution failed: the service stopped before the execution ended, and its caller no longer waits for it."
)

// errNotOurs means another engine started the execution first.
var errNotOurs = errors.New("execution started by another engine")

// errCallerGone means a sync execution's caller in this process stopped
// waiting before it started; the caller ends it.
var errCallerGone = errors.New("caller gone before the execution started")

// recovery is an engine's side of the promise that no execution stays
// running: it records which engine instance started an execution
// (db.StartExecution, once, right before a worker receives it), ends the
// executions of instances that vanished, and drains on a clean stop.
//
// An execution no engine started is still the transport's: RabbitMQ
// delivers its unacknowledged message again, and in the all-in-one the
// executions table is the queue (Replay). One that an engine started is
// never run again; when that engine is gone it ends in error.
type recovery struct {
	// instance names this engine process: its name plus a random suffix, as
	// a restarted engine keeps its name but not its executions.
	instance string
	stopping atomic.Bool

	mu      sync.Mutex
	running map[string]*tracked
	backlog []db.Execution // the all-in-one's unstarted executions at start
}

type tracked struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newRecovery(name string) recovery {
	return recovery{instance: name + "#" + uuid.NewString()[:8], running: map[string]*tracked{}}
}

// Instance is this engine process's name in etcd and in executions.
func (e *Engine) Instance() string { return e.rec.instance }

// startRecovery registers this engine as alive, ends what vanished engines
// left running and starts the periodic check. previousRunGone says every
// other engine instance is known to be dead (the all-in-one starting: its
// previous process's lease may outlive it by the TTL); it also ends the
// synchronous executions no engine started, whose callers died with that
// process, and keeps the asynchronous ones for Replay.
func (e *Engine) startRecovery(ctx context.Context, previousRunGone bool) error {
	if err := e.coord.Register(ctx, e.rec.instance); err != nil {
		return fmt.Errorf("register engine %s: %w", e.rec.instance, err)
	}
	e.log.Info("engine registered", "instance", e.rec.instance)
	if err := e.Recover(ctx, previousRunGone); err != nil {
		return err
	}
	if previousRunGone {
		n, err := e.db.EndUnstartedSync(ctx, failure(msgNoCaller))
		if err != nil {
			return err
		}
		if n > 0 {
			e.log.Warn("ended synchronous executions left by the previous run", "count", n, "reason", msgNoCaller)
		}
		backlog, err := e.db.UnstartedAsync(ctx)
		if err != nil {
			return err
		}
		e.rec.mu.Lock()
		e.rec.backlog = backlog
		e.rec.mu.Unlock()
	}
	go e.recoverLoop(ctx)
	return nil
}

// Recover ends, as error, the running executions started by engine
// instances that are no longer registered (all but this one when
// previousRunGone). Any engine may run it at any time.
func (e *Engine) Recover(ctx context.Context, previousRunGone bool) error {
	// Executions first, then the live engines: an engine registers before
	// it starts anything, so one seen in the first list and missing from
	// the second is gone (the other order could miss a newcomer).
	holders, err := e.db.StartedExecutionEngines(ctx)
	if err != nil {
		return err
	}
	if len(holders) == 0 {
		return nil
	}
	var live []string
	if !previousRunGone {
		if live, err = e.coord.Engines(ctx); err != nil {
			return err
		}
	}
	for _, h := range holders {
		if h == e.rec.instance || slices.Contains(live, h) {
			continue
		}
		n, err := e.db.EndEngineExecutions(ctx, h, failure(msgEngineStopped))
		if err != nil {
			return err
		}
		if n > 0 {
			e.log.Warn("ended the running executions of an engine that is gone", "engine", h, "count", n)
		}
	}
	return nil
}

func (e *Engine) recoverLoop(ctx context.Context) {
	every(ctx, e.opts.RecoveryInterval, func() {
		if err := e.Recover(ctx, false); err != nil && ctx.Err() == nil {
			e.log.Warn("recovery check failed", "error", err)
		}
	})
}

// every calls fn each interval until ctx ends; not at all for interval <= 0.
func every(ctx context.Context, interval time.Duration, fn func()) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Replay sends the all-in-one's unstarted asynchronous executions of the
// previous run to c again, oldest first, once the engine serves: the
// executions table is the all-in-one's durable queue. A request that arrives
// twice runs once (db.StartExecution).
func (e *Engine) Replay(ctx context.Context, c Client) {
	e.rec.mu.Lock()
	backlog := e.rec.backlog
	e.rec.backlog = nil
	e.rec.mu.Unlock()
	if len(backlog) > 0 {
		e.log.Info("running the asynchronous executions the previous run had not started", "count", len(backlog))
	}
	for _, x := range backlog {
		a := ExecutionArgs{ExecutionID: x.ID, FunctionVersion: x.FunctionVersion}
		if x.FunctionID != nil {
			a.FunctionID = *x.FunctionID
		}
		if x.Input != nil {
			a.Input = json.RawMessage(*x.Input)
		}
		rctx := reqctx.With(ctx, reqctx.Identity{RequestID: "req-" + uuid.NewString(), ProjectID: x.ProjectID})
		if _, err := c.CreateExecution(rctx, a, false); err != nil {
			// Stopping again: the row stays the queue for the next start.
			e.log.Warn("replay stopped", "execution_id", x.ID, "error", err)
			return
		}
	}
}

// track runs one execution under a context of the engine's own: a stopping
// transport does not cut it short, Drain does, after the grace period.
func (e *Engine) track(ctx context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &tracked{cancel: cancel, done: make(chan struct{})}
	e.rec.mu.Lock()
	e.rec.running[id] = t
	e.rec.mu.Unlock()
	return ctx, func() {
		e.rec.mu.Lock()
		delete(e.rec.running, id)
		e.rec.mu.Unlock()
		cancel()
		close(t.done)
	}
}

// begin records that this engine starts the execution now; errNotOurs if
// another engine did first.
//
// A sync execution whose caller is in this process (rpc.LocalCaller: the
// all-in-one) is not recorded now but with its end (t.started, db.Outcome):
// its request comes exactly once, so no second delivery needs the mark, and
// a crash that leaves it running without an engine ends its caller too and
// is settled at the next start (db.EndUnstartedSync), as a started one
// would be. One write and one commit fewer per warm execution. Its caller
// gone (the API ends it), it is not run (errCallerGone).
func (e *Engine) begin(ctx context.Context, id string, sync bool, t *Timing) error {
	if done, local := rpc.LocalCaller(ctx); local && sync {
		select {
		case <-done:
			return errCallerGone
		default:
		}
		t.started = time.Now().UTC()
		return nil
	}
	log := reqctx.Logger(ctx, e.log).With("execution_id", id)
	// Milliseconds, what MySQL keeps: the end transaction then knows the
	// row's started_at without reading it (db.Outcome.Read).
	at := time.Now().UTC().Truncate(time.Millisecond)
	var ok bool
	err := e.untilDB(ctx, log, func() (err error) {
		ok, err = e.db.StartExecutionAt(ctx, id, e.rec.instance, at)
		return err
	})
	if err != nil {
		return err
	}
	if !ok {
		return errNotOurs
	}
	t.began = at
	log.Info("execution started", "engine", e.rec.instance)
	return nil
}

// settleStarted answers a request for an execution that an engine already
// started (a message delivered again): left alone while that engine lives,
// ended as error when it is gone. It is never run a second time.
func (e *Engine) settleStarted(ctx context.Context, log *slog.Logger, id string) error {
	var cur *db.Execution
	err := e.untilDB(ctx, log, func() (err error) {
		cur, err = e.db.Execution(ctx, db.Internal, id)
		return err
	})
	if err != nil && errdefs.KindOf(err) != errdefs.KindNotFound {
		return err
	}
	if err != nil || cur.Status != db.StatusRunning || cur.Engine == nil {
		log.Info("execution not running any more, skipped", "error", err)
		return nil
	}
	holder := *cur.Engine
	if holder == e.rec.instance {
		log.Info("execution already running on this engine, request skipped")
		return nil
	}
	live, err := e.coord.Engines(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(live, holder) {
		log.Info("execution running on another live engine, request skipped", "engine", holder)
		return nil
	}
	result := failure(msgEngineStopped)
	finished, err := e.db.FinishExecution(ctx, id, db.StatusError, &result, nil)
	if err != nil {
		return err
	}
	if finished {
		e.opts.Metrics.ExecutionFinished(endedByStop(cur))
	}
	log.Warn("execution ended: the engine that started it is gone", "engine", holder)
	return nil
}

// stopped says whether an execution's failure is the engine's stop.
func (e *Engine) stopped(ctx context.Context) bool {
	return e.rec.stopping.Load() && ctx.Err() != nil
}

// Drain is the engine's clean stop, once its transport stopped taking
// requests: the running executions get up to grace to finish; then the rest
// are cancelled and end in error saying the engine stopped.
func (e *Engine) Drain(grace time.Duration) {
	e.rec.stopping.Store(true)
	pending := e.runningNow()
	if len(pending) > 0 {
		e.log.Info("stopping: letting running executions finish", "running", len(pending), "grace_period", grace)
		waitAll(pending, grace)
	}
	// Read again: a request the transport handed over while it stopped
	// counts too.
	left := e.runningNow()
	if len(left) == 0 {
		return
	}
	e.log.Warn("stopping: ending executions still running after the grace period", "running", len(left), "reason", msgEngineStopped)
	for _, t := range left {
		t.cancel()
	}
	// A run that ignores its cancellation is ended here.
	for id := range waitAll(left, 10*time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		result := failure(msgEngineStopped)
		cur, _ := e.db.Execution(ctx, db.Internal, id)
		if finished, err := e.db.FinishExecution(ctx, id, db.StatusError, &result, nil); err != nil {
			e.log.Error("stopping: end execution", "execution_id", id, "error", err)
		} else if finished && cur != nil {
			e.opts.Metrics.ExecutionFinished(endedByStop(cur))
		}
		cancel()
	}
}

func (e *Engine) runningNow() map[string]*tracked {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	out := make(map[string]*tracked, len(e.rec.running))
	for id, t := range e.rec.running {
		out[id] = t
	}
	return out
}

// waitAll waits up to d for every tracked execution to end and returns
// those that did not.
func waitAll(ts map[string]*tracked, d time.Duration) map[string]*tracked {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, t := range ts {
		select {
		case <-t.done:
		case <-timer.C:
			left := map[string]*tracked{}
			for id, t := range ts {
				select {
				case <-t.done:
				default:
					left[id] = t
				}
			}
			return left
		}
	}
	return nil
}

// failure is the result column of an execution that could not finish.
func failure(msg string) string {
	return encodeResult(orchestrator.Result{Output: jsonString(msg)}, Timing{})
}
