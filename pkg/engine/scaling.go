package engine

import (
	"context"
	"time"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// The scaling policies ([engine] scaling_policy, docs/scaling.md).
const (
	// PolicyQueue sizes a function's workers to its demand: in flight plus
	// queued executions over the target per worker, with a burst when the
	// queue goes stale and a gradual scale-down.
	PolicyQueue = "queue"
	// PolicyUpstream is upstream Qinling's rule, kept for comparison: one
	// more worker at a time while the executions exceed function_concurrency
	// per worker; workers go only when the function is idle for
	// function_service_expiration.
	PolicyUpstream = "upstream"
)

// ScalingOptions are the autoscaler's settings ([engine] scaling_* and
// friends).
type ScalingOptions struct {
	Policy string
	// MinWorkers are kept while a function is active (from its first
	// execution until it is idle for Expiration); at least one.
	MinWorkers int
	// TargetPerWorker is the in-flight plus queued executions one worker
	// should carry; 0 means FunctionConcurrency (every execution runs at once
	// when MaxWorkers allows).
	TargetPerWorker int
	// BurstAfter is the wait after which a queued execution is stale: the
	// burst adds the workers that drain the queue at the observed call
	// duration within about this long (OpenWhisk's rule).
	BurstAfter time.Duration
	// Interval is how often the queues and idle workers are looked at.
	Interval time.Duration
	// DownWindow is how long fewer workers must have sufficed before any is
	// released; DownStep how many go per Interval after it.
	DownWindow time.Duration
	DownStep   int
}

func (o *ScalingOptions) setDefaults(concurrency int) {
	if o.Policy == "" {
		o.Policy = PolicyQueue
	}
	o.MinWorkers = max(o.MinWorkers, 1)
	if o.TargetPerWorker <= 0 {
		o.TargetPerWorker = concurrency
	}
	if o.BurstAfter <= 0 {
		o.BurstAfter = 200 * time.Millisecond
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.DownWindow <= 0 {
		o.DownWindow = time.Minute
	}
	o.DownStep = max(o.DownStep, 1)
}

// load is what a scaling decision looks at, for one function version on
// this engine.
type load struct {
	workers, scaling, inflight, queued int
	oldest                             time.Duration // wait of the oldest queued execution
	avgRun                             time.Duration
	// minW and maxW bound the function's workers: its own min_workers and
	// max_workers, or the deployment's.
	minW, maxW int
}

// bounds are f's minimum and maximum of workers: its own (set by an admin,
// docs/scaling.md) or the deployment's.
func (e *Engine) bounds(f *db.Function) (lo, hi int) {
	lo, hi = e.opts.Scaling.MinWorkers, e.opts.MaxWorkers
	if f != nil && f.MinWorkers != nil {
		lo = max(*f.MinWorkers, 1)
	}
	if f != nil && f.MaxWorkers != nil {
		hi = max(*f.MaxWorkers, 1)
	}
	return min(lo, hi), hi
}

// loadOf reads st; e.mu is held.
func (e *Engine) loadOf(st *fnState, now time.Time) load {
	l := load{workers: len(st.workers), scaling: st.scaling, queued: len(st.waiting), avgRun: st.avgRun}
	l.minW, l.maxW = e.bounds(st.fn)
	for _, n := range st.busy {
		l.inflight += n
	}
	// With shared workers the other engines' executions are demand too
	// (dispatch.go acquire): the database's count holds every running one,
	// queued or in flight, of all engines.
	if extra := st.shared - l.inflight - l.queued; extra > 0 {
		l.inflight += extra
	}
	if len(st.waiting) > 0 {
		l.oldest = now.Sub(st.waiting[0].since)
	}
	return l
}

func ceilDiv(a, b int) int { return (a + b - 1) / max(b, 1) }

// desired is the number of workers a function version should have under l,
// and the rule that says so.
func (e *Engine) desired(l load) (int, string) {
	o := e.opts.Scaling
	current := l.workers + l.scaling
	demand := l.inflight + l.queued
	if o.Policy == PolicyUpstream {
		switch {
		case current == 0 && demand > 0:
			return 1, "no worker"
		case l.scaling == 0 && l.workers < l.maxW && demand > l.workers*e.opts.FunctionConcurrency:
			return current + 1, "load above function_concurrency"
		}
		return current, "steady"
	}
	want, reason := ceilDiv(demand, o.TargetPerWorker), "target"
	if l.queued > 0 && l.oldest >= o.BurstAfter {
		// Slots that drain the queue within BurstAfter at the observed
		// duration; an unknown duration counts as long (one per execution).
		per := 1
		if l.avgRun > 0 {
			per = max(1, int(o.BurstAfter/l.avgRun))
		}
		if burst := l.workers + ceilDiv(ceilDiv(l.queued, per), e.opts.FunctionConcurrency); burst > want {
			want, reason = burst, "burst"
		}
	}
	return min(max(want, l.minW), l.maxW), reason
}

// autoscale decides on fv's workers now and starts adding those missing.
// It never waits: the queue's waiters get the new workers as they come.
func (e *Engine) autoscale(ctx context.Context, fv coord.FunctionVersion, why string) {
	e.mu.Lock()
	st := e.fns[fv]
	if st == nil || st.fn == nil || st.detaching > 0 {
		e.mu.Unlock()
		return
	}
	l := e.loadOf(st, time.Now())
	want, reason := e.desired(l)
	add := want - l.workers - l.scaling
	if add <= 0 {
		e.mu.Unlock()
		return
	}
	st.scaling += add
	f := st.fn
	e.mu.Unlock()
	reqctx.Logger(ctx, e.log).Info("scale decision", "function_id", fv.FunctionID, "version", fv.Version,
		"policy", e.opts.Scaling.Policy, "trigger", why, "rule", reason, "workers", l.workers, "starting", l.scaling,
		"in_flight", l.inflight, "queued", l.queued, "oldest_wait", l.oldest, "avg_run", l.avgRun, "desired", want, "add", add)
	e.opts.Metrics.ScaleDecision("up", reason)
	go e.grow(context.WithoutCancel(ctx), fv, f, add)
}

// grow adds up to add workers to fv under the function's lock (so that
// engines sharing workers do not both add them for one need) and hands
// them to the queue. If none can be added and the function has none, its
// queued executions fail with the reason.
func (e *Engine) grow(ctx context.Context, fv coord.FunctionVersion, f *db.Function, add int) {
	added, err := e.growLocked(ctx, fv, f, add)
	e.mu.Lock()
	st := e.state(fv)
	st.scaling -= add
	e.addWorkers(st, added)
	if err != nil {
		reqctx.Logger(ctx, e.log).Warn("scale up failed", "function_id", fv.FunctionID, "version", fv.Version, "error", err)
		if len(st.workers) == 0 && st.scaling == 0 {
			e.failWaiters(st, err)
		}
	}
	again := err == nil && len(added) > 0 && len(st.waiting) > 0
	e.mu.Unlock()
	if again {
		// Executions that queued while these workers started asked for
		// them only once (upstream's rule adds one at a time): look again
		// now, not only when the queue goes stale on the ticker.
		e.autoscale(ctx, fv, "still queued")
	}
}

func (e *Engine) growLocked(ctx context.Context, fv coord.FunctionVersion, f *db.Function, add int) ([]coord.WorkerRecord, error) {
	lctx, cancel := context.WithTimeout(ctx, e.opts.LockWait)
	defer cancel()
	unlock, err := e.coord.Lock(lctx, lockName(fv))
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another engine may have added workers while this one waited for the
	// lock: with a shared orchestrator, count them; with an engine-local
	// one, pass the waiting executions on to it if this engine has none
	// (route.go), and scale only for those that cannot be.
	all, recorded, err := e.workerRecords(ctx, fv)
	if err != nil {
		return nil, err
	}
	owner := ""
	if e.engineLocal && len(recorded) == 0 {
		owner = e.routeTarget(ctx, all)
	}
	// With shared workers, the function's load is every engine's running
	// executions, counted now: an engine whose executions all queued while
	// another engine started the first worker has not counted them since
	// (sharedLoad runs when a slot is free at once), and would find that
	// one worker enough for its own queue alone.
	shared := -1
	if !e.engineLocal {
		if n, err := e.db.RunningExecutions(ctx, fv.FunctionID, fv.Version); err == nil {
			shared = n
		}
	}
	e.mu.Lock()
	st := e.state(fv)
	if shared >= 0 {
		st.shared = shared
	}
	routed := 0
	if owner != "" {
		routed = e.forwardWaiters(st, owner)
	}
	e.setWorkers(st, recorded)
	l := e.loadOf(st, time.Now())
	want, _ := e.desired(l)
	n := min(add, want-len(st.workers)-(st.scaling-add))
	e.mu.Unlock()
	e.routed(ctx, fv, owner, routeOwnerScaled, routed)
	// No demand left (every waiter was passed on, or gave up): the minimum
	// of workers applies to a function this engine serves, not to one it
	// never ran.
	if n <= 0 || l.inflight+l.queued == 0 {
		return nil, nil
	}
	return e.scaleUp(ctx, f, fv.Version, n)
}

// scaleLoop runs ScaleTick every Interval.
func (e *Engine) scaleLoop(ctx context.Context) {
	every(ctx, e.opts.Scaling.Interval, func() { e.ScaleTick(ctx) })
}

// ScaleTick is one look at every function version this engine serves: a
// stale queue is scaled for (the burst; also the retry after a failed
// scale-up), and idle workers beyond the need of the last DownWindow are
// released, DownStep at a time. Workers of a shared orchestrator are left to
// idle expiry: another engine may be running executions on them.
func (e *Engine) ScaleTick(ctx context.Context) {
	o := e.opts.Scaling
	now := time.Now()
	type release struct {
		fv     coord.FunctionVersion
		worker coord.WorkerRecord
		l      load
		want   int
		calm   time.Duration
	}
	var stale []coord.FunctionVersion
	var gone []release
	e.mu.Lock()
	for fv, st := range e.fns {
		l := e.loadOf(st, now)
		if l.queued > 0 && l.oldest >= o.BurstAfter {
			stale = append(stale, fv)
		}
		if !e.engineLocal || o.Policy == PolicyUpstream {
			continue
		}
		want, _ := e.desired(l)
		if l.scaling > 0 || l.queued > 0 || want >= l.workers {
			st.calm = time.Time{}
			continue
		}
		if st.calm.IsZero() {
			st.calm = now
		}
		if now.Sub(st.calm) < o.DownWindow {
			continue
		}
		n := min(o.DownStep, l.workers-want)
		for _, w := range st.workers {
			if n == 0 {
				break
			}
			if st.busy[w.Name] == 0 {
				gone = append(gone, release{fv: fv, worker: w, l: l, want: want, calm: now.Sub(st.calm)})
				st.removed[w.Name] = true
				n--
			}
		}
		for _, g := range gone {
			if g.fv == fv {
				e.dropWorkerLocked(st, g.worker.Name)
			}
		}
	}
	e.mu.Unlock()
	for _, fv := range stale {
		e.autoscale(ctx, fv, "stale queue")
	}
	for _, g := range gone {
		e.log.Info("scale decision", "function_id", g.fv.FunctionID, "version", g.fv.Version, "policy", o.Policy,
			"trigger", "calm", "rule", "scale down", "workers", g.l.workers, "in_flight", g.l.inflight,
			"desired", g.want, "calm_for", g.calm, "remove", g.worker.Name)
		e.opts.Metrics.ScaleDecision("down", "scale down")
		e.forgetWorker(ctx, g.fv, g.worker)
	}
}
