package engine

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// Messages users see in an execution's result.
const (
	msgFailed     = "Function execution failed."
	msgWorkerLost = "Function execution failed: the worker process died during the execution."
)

// attempts bounds how often an execution is sent to another worker when the
// chosen one turns out to be gone before anything ran.
const attempts = 3

// CreateExecution runs one execution and stores its outcome. Whatever
// happens, the execution does not stay "running": it ends success, failed
// (the function ran and failed), or error (it could not be run).
func (e *Engine) CreateExecution(ctx context.Context, a ExecutionArgs) error {
	_, err := e.RunExecution(ctx, a)
	return err
}

// RunExecution is CreateExecution, which also returns the outcome it stored
// for a sync execution, for the API to answer with (nil when it stored none).
func (e *Engine) RunExecution(ctx context.Context, a ExecutionArgs) (*ExecutionOutcome, error) {
	log := reqctx.Logger(ctx, e.log).With("execution_id", a.ExecutionID, "function_id", a.FunctionID)
	// The transport passes the request on to the engine owning the
	// function's workers (route.go), which reads the execution itself.
	if err := e.forwardOnArrival(ctx, coord.FunctionVersion{FunctionID: a.FunctionID, Version: a.FunctionVersion}); err != nil {
		return nil, err
	}
	cur := a.Execution
	if !fresh(cur, a.ExecutionID) {
		a.Function = nil
		var err error
		if cur, err = e.readRunning(ctx, log, a.ExecutionID); cur == nil {
			return nil, err
		}
	}
	// A row the API sent says nothing of a second delivery: the engine
	// finds out when it records the start (begin), as it would had another
	// engine started the execution in between.
	if cur.Engine != nil {
		return nil, e.settleStarted(ctx, log, a.ExecutionID)
	}
	ctx, untrack := e.track(ctx, a.ExecutionID)
	defer untrack()
	defer e.opts.Metrics.ExecutionRunning()()
	start := time.Now()
	t := Timing{QueueMS: ms(start.Sub(cur.CreatedAt))}
	res, status, err := e.execute(ctx, a, cur.Sync, &t)
	var fw *rpc.Forward
	switch {
	case errors.Is(err, errNotOurs):
		return nil, e.settleStarted(ctx, log, a.ExecutionID)
	case errors.Is(err, errCallerGone):
		log.Info("execution not run: its caller stopped waiting before a worker took it")
		return nil, nil
	case errors.As(err, &fw):
		// The transport passes the request on to the engine that owns the
		// function's workers (route.go); nothing was started here.
		return nil, err
	case err != nil && e.stopped(ctx):
		log.Warn("execution ended by the engine's stop", "error", err)
		res, status = orchestrator.Result{Output: jsonString(msgEngineStopped)}, db.StatusError
		t.failReason = metrics.ReasonEngineStopped
	case err != nil:
		log.Warn("execution could not run", "error", err)
		res = orchestrator.Result{Output: jsonString(msgFailed + " " + errdefs.PublicMessage(err))}
		status = db.StatusError
		t.failReason = string(errdefs.KindOf(err))
	}
	t.TotalMS = ms(time.Since(cur.CreatedAt))
	used := t.used(res)
	result := encodeResult(res, t)
	var logs *string
	if res.Logs != "" {
		logs = &res.Logs
	}
	// A background context: the outcome must be stored even if the caller
	// (a sync API request) gave up waiting.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbWait+30*time.Second)
	defer cancel()
	var finished bool
	// Milliseconds, what MySQL's columns keep (gorm's DATETIME(3)): the
	// answer then says what a later read says.
	end := time.Now().UTC().Truncate(time.Millisecond)
	if err := e.untilDB(sctx, log, func() error {
		var err error
		finished, err = e.db.Finish(sctx, a.ExecutionID, db.Outcome{Status: status, Result: &result, Logs: logs, Usage: used, Read: t.read(cur, e.rec.instance),
			Function: t.function, End: end, StartedBy: e.rec.instance, StartedAt: t.started})
		return err
	}); err != nil {
		log.Error("store execution result", "error", err)
		return nil, err
	}
	// One INFO line per execution: its start (recovery.go), which the
	// chaos suite counts; a success's end, a second line with nothing the
	// row does not keep, is DEBUG (docs/benchmarks.md, "The engine's and
	// the API's share"). An end that is not a success stays at INFO.
	level := slog.LevelInfo
	if status == db.StatusSuccess {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, "execution finished", "status", status, "duration", res.Duration, "elapsed", time.Since(start))
	if !finished {
		return nil, nil
	}
	e.opts.Metrics.ExecutionFinished(t.metrics(cur, status, res))
	if !cur.Sync {
		return nil, nil
	}
	return &ExecutionOutcome{Status: status, Result: &result, UpdatedAt: end}, nil
}

// freshFor is how long after its insert a request's rows are used as they
// came. An older request waited (in a queue, behind busy workers) long
// enough for its caller to give up and end the execution, or for its
// function to change: the engine reads both rows again, so that it does not
// wait for a worker, or start one, for an execution that is over. Either
// way begin's conditional update keeps it from running twice.
const freshFor = time.Second

// fresh reports whether the execution row a request carries is its own and
// recent (freshFor).
func fresh(row *db.Execution, id string) bool {
	return row != nil && row.ID == id && time.Since(row.CreatedAt) < freshFor
}

// readRunning reads the execution a request names; nil (and no error) when
// it is not running any more. A message broker delivers at least once: a
// request whose engine died before acknowledging it comes again. Only a
// still-running execution is worth running; a finished or deleted one is
// done.
func (e *Engine) readRunning(ctx context.Context, log *slog.Logger, id string) (*db.Execution, error) {
	var cur *db.Execution
	err := e.untilDB(ctx, log, func() (err error) {
		cur, err = e.db.Execution(ctx, db.Internal, id)
		return err
	})
	if err != nil && errdefs.KindOf(err) != errdefs.KindNotFound {
		log.Error("execution could not be read; request dropped", "error", err)
		return nil, err
	}
	if err != nil || cur.Status != db.StatusRunning {
		log.Info("execution not running any more, skipped", "error", err)
		return nil, nil
	}
	return cur, nil
}

// dbWait bounds how long an engine waits for an unreachable database (a
// MariaDB restart) before it gives up on what it was doing.
const dbWait = 5 * time.Minute

// untilDB runs op until the database answers it (op's error is not
// "unavailable"), for at most dbWait and while ctx lasts. An execution the
// engine was handed must not be dropped, nor its outcome lost, because the
// database was restarting: the chaos suite found requests acknowledged as
// "not running any more" and so never run, their executions running
// forever.
func (e *Engine) untilDB(ctx context.Context, log *slog.Logger, op func() error) error {
	deadline := time.Now().Add(dbWait)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := op()
		if errdefs.KindOf(err) != errdefs.KindUnavailable || time.Now().After(deadline) {
			return err
		}
		log.Warn("database unavailable; waiting for it", "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Timing says where an execution's time went, in milliseconds: waiting for
// an engine (from the API's insert), getting a worker (including waiting in
// the function's queue and specialising one), and the call to the worker (the function's own duration
// is in the result's "duration"). Worker holds the phases the worker
// measured inside that call, when it reports them (under strict isolation:
// getting an execution process, running it, importing the function).
//
// The rest is what the execution used, as counted in the usage rollup
// (pkg/db/usage.go): whether getting a worker meant specialising one (a cold
// start), CPU time and peak memory where the orchestrator measures them
// (the local one, from the worker's cgroup; absent: unknown), memory_size and
// GB-seconds (memory_size in GiB × the function's duration in s, as Lambda).
type Timing struct {
	QueueMS         float64            `json:"queue_ms"`
	AcquireMS       float64            `json:"acquire_ms"`
	RunMS           float64            `json:"run_ms"`
	TotalMS         float64            `json:"total_ms"`
	Worker          map[string]float64 `json:"worker,omitempty"`
	ColdStart       bool               `json:"cold_start"`
	CPUMS           *float64           `json:"cpu_ms,omitempty"`
	PeakMemoryBytes int64              `json:"peak_memory_bytes,omitempty"`
	MemorySize      int64              `json:"memory_size"`
	GBSeconds       float64            `json:"gb_seconds"`

	failReason string       // why it failed, for the metrics (metrics.go)
	started    time.Time    // when begin started it without recording it (recovery.go)
	began      time.Time    // when begin recorded that it started it (recovery.go)
	function   *db.Function // the function as it ran, once read
	ran        bool         // a worker was called: the execution waited for one (metrics.go)
}

// read is the execution row as it stands before its end is stored: cur as
// read or sent, and the start begin recorded since (db.Outcome.Read).
func (t *Timing) read(cur *db.Execution, instance string) *db.Execution {
	row := *cur
	if !t.began.IsZero() {
		began := t.began
		row.Engine, row.StartedAt = &instance, &began
	}
	return &row
}

// used fills t's usage figures from res and returns them for the rollup.
func (t *Timing) used(res orchestrator.Result) db.Usage {
	u := db.Usage{
		DurationMS: int64(math.Round(res.Duration * 1000)), CPUMS: res.CPUTime.Milliseconds(),
		PeakMemoryBytes: res.PeakMemory, MemorySize: t.MemorySize,
		WaitMS: int64(math.Round(t.QueueMS + t.AcquireMS)), ColdStart: t.ColdStart,
	}
	if t.ColdStart {
		u.ColdStartMS = int64(math.Round(t.AcquireMS))
	}
	if res.CPUTime > 0 {
		cpu := ms(res.CPUTime)
		t.CPUMS = &cpu
	}
	t.PeakMemoryBytes = res.PeakMemory
	t.GBSeconds = db.GBSeconds(u.MemoryKiBMS())
	return u
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// execute runs the execution on a worker of its function. A synchronous one
// waits for a free worker at most its function's timeout; an asynchronous one
// as long as it takes.
func (e *Engine) execute(ctx context.Context, a ExecutionArgs, sync bool, t *Timing) (orchestrator.Result, string, error) {
	f := a.Function
	if f == nil || f.ID != a.FunctionID {
		err := e.untilDB(ctx, reqctx.Logger(ctx, e.log), func() (err error) {
			f, err = e.db.Function(ctx, db.Internal, a.FunctionID)
			return err
		})
		if err != nil {
			return orchestrator.Result{}, "", err
		}
	}
	t.MemorySize, t.function = f.MemorySize, f
	if code := f.ParsedCode(); code.Source == db.SourceImage {
		return e.executeImage(ctx, a, f, code.Image, sync, t)
	}
	inv := invocation(f, a, reqctx.From(ctx).RequestID)
	fv := coord.FunctionVersion{FunctionID: f.ID, Version: a.FunctionVersion}
	var maxWait time.Duration
	if sync {
		maxWait = time.Duration(max(f.Timeout, 1)) * time.Second
	}
	for try := 1; ; try++ {
		acquire := time.Now()
		w, cold, err := e.acquire(ctx, f, a.FunctionVersion, maxWait)
		t.AcquireMS += ms(time.Since(acquire))
		t.ColdStart = t.ColdStart || cold
		if err != nil {
			return orchestrator.Result{}, "", err
		}
		if try == 1 {
			if err := e.begin(ctx, a.ExecutionID, sync, t); err != nil {
				e.release(fv, w, 0)
				return orchestrator.Result{}, "", err
			}
		}
		run := time.Now()
		res, err := e.orch.Run(ctx, orchestrator.Worker{Name: w.Name, Address: w.Address}, inv)
		took := time.Since(run)
		if errors.Is(err, orchestrator.ErrWorkerNotFound) || errors.Is(err, orchestrator.ErrWorkerLost) {
			// Out of dispatch before its slot is handed on.
			e.dropWorker(fv, w.Name)
			e.release(fv, w, 0)
		} else {
			e.release(fv, w, took)
		}
		t.RunMS += ms(took)
		t.ran = true
		switch {
		case err == nil:
			t.Worker = res.Timing
			status := db.StatusSuccess
			if !res.Success {
				status, t.failReason = db.StatusFailed, metrics.ReasonFunction
			}
			return res, status, nil
		case errors.Is(err, orchestrator.ErrWorkerNotFound) && try < attempts:
			// Nothing ran: forget the dead worker and try another one.
			e.forgetWorker(ctx, fv, w)
			continue
		case errors.Is(err, orchestrator.ErrWorkerLost):
			e.forgetWorker(ctx, fv, w)
			t.failReason = metrics.ReasonWorkerLost
			return orchestrator.Result{Output: jsonString(msgWorkerLost)}, db.StatusFailed, nil
		default:
			if errors.Is(err, orchestrator.ErrWorkerNotFound) {
				e.forgetWorker(ctx, fv, w)
			}
			return orchestrator.Result{}, "", err
		}
	}
}

// executeImage runs an image function through an orchestrator that can
// (docs/kubernetes.md, "Image functions"): one container of the function's image per execution,
// the raw string input split on whitespace as its arguments.
func (e *Engine) executeImage(ctx context.Context, a ExecutionArgs, f *db.Function, image string, sync bool, t *Timing) (orchestrator.Result, string, error) {
	runner, ok := e.orch.(orchestrator.ImageRunner)
	if !ok {
		return orchestrator.Result{}, "", errdefs.Invalid("Image functions cannot run on this orchestrator.")
	}
	args, err := imageArgs(a.Input)
	if err != nil {
		return orchestrator.Result{}, "", err
	}
	if err := e.begin(ctx, a.ExecutionID, sync, t); err != nil {
		return orchestrator.Result{}, "", err
	}
	run := time.Now()
	res, err := runner.RunImage(ctx, imageInvocation(f, a, image, args, reqctx.From(ctx).RequestID))
	t.RunMS = ms(time.Since(run))
	t.ran = true
	if err != nil {
		return orchestrator.Result{}, "", err
	}
	if !res.Success {
		t.failReason = metrics.ReasonFunction
		return res, db.StatusFailed, nil
	}
	return res, db.StatusSuccess, nil
}

// imageArgs turns an execution's input into an image function's container
// arguments: a raw string (which the API passes as {"__function_input":
// "..."}) split on whitespace, nothing without input. Keyword input has no
// meaning for a container and is refused, where upstream failed the pod.
func imageArgs(input json.RawMessage) ([]string, error) {
	if len(input) == 0 || string(input) == "null" {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(input, &obj); err == nil {
		raw, ok := obj["__function_input"]
		var s string
		if ok && len(obj) == 1 && json.Unmarshal(raw, &s) == nil {
			return strings.Fields(s), nil
		}
		if len(obj) == 0 {
			return nil, nil
		}
	}
	return nil, errdefs.Invalid("Image functions take a plain string input, passed to the container as its arguments split on whitespace.")
}

// encodeResult renders upstream's result column, {"duration": s, "output":
// v}, plus qinling-go's per-phase timing (clients read only the first two).
func encodeResult(r orchestrator.Result, t Timing) string {
	out := r.Output
	if len(out) == 0 {
		out = json.RawMessage("null")
	}
	b, err := json.Marshal(struct {
		Duration float64         `json:"duration"`
		Output   json.RawMessage `json:"output"`
		Timing   Timing          `json:"timing"`
	}{Duration: math.Round(r.Duration*1000) / 1000, Output: out, Timing: t})
	if err != nil {
		// The worker sent output that is not JSON after all.
		b, _ = json.Marshal(map[string]any{"duration": r.Duration, "output": "Function result could not be encoded."})
	}
	return string(b)
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// reapIdle releases the workers of function versions that had no execution
// (and no update) for the expiration time, as upstream's periodic task.
func (e *Engine) reapIdle(ctx context.Context) {
	if e.opts.Expiration <= 0 {
		return
	}
	every(ctx, e.opts.ExpirationInterval, func() {
		if err := e.ReapIdle(ctx); err != nil {
			e.log.Warn("idle worker check failed", "error", err)
		}
	})
}

// ReapIdle runs one idle check.
func (e *Engine) ReapIdle(ctx context.Context) error {
	fvs, err := e.coord.Functions(ctx)
	if err != nil {
		return err
	}
	cutoff := time.Now().UTC().Add(-e.opts.Expiration)
	for _, fv := range fvs {
		last, err := e.lastActivity(ctx, fv)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		// A deleted function's workers go too.
		if errors.Is(err, errdefs.ErrNotFound) || !last.After(cutoff) {
			e.log.Info("releasing idle workers", "function_id", fv.FunctionID, "version", fv.Version)
			if err := e.DeleteFunction(ctx, fv.FunctionID, fv.Version); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *Engine) lastActivity(ctx context.Context, fv coord.FunctionVersion) (time.Time, error) {
	var base db.Base
	if fv.Version == 0 {
		f, err := e.db.Function(ctx, db.Internal, fv.FunctionID)
		if err != nil {
			return time.Time{}, err
		}
		base = f.Base
	} else {
		v, err := e.db.FunctionVersion(ctx, db.Internal, fv.FunctionID, fv.Version)
		if err != nil {
			return time.Time{}, err
		}
		base = v.Base
	}
	if base.UpdatedAt != nil {
		return *base.UpdatedAt, nil
	}
	return base.CreatedAt, nil
}
