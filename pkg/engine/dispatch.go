package engine

import (
	"context"
	"slices"
	"time"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// Dispatch: a worker runs at most function_concurrency executions at once
// (a hard cap). An execution that finds every slot of its function's
// workers taken waits in the function's queue, oldest first; whichever
// worker frees a slot first hands it to the oldest waiter (pull), so no
// execution waits behind a long one while a worker of its function is free.
// The queue is this engine's: its waiters are the requests this engine's
// transport handed it (asynchronous ones stay unacknowledged on RabbitMQ, or
// running in the all-in-one's executions table, until they end).

// fnState is this engine's view of one function version. Guarded by
// Engine.mu.
type fnState struct {
	fn      *db.Function         // the row as last seen, for scaling from the ticker
	workers []coord.WorkerRecord // usable by this engine, oldest first
	busy    map[string]int       // executions running per worker, this engine's
	waiting []*waiter            // oldest first
	scaling int                  // workers being added now
	calm    time.Time            // since when fewer workers would do (zero: not calm)
	avgRun  time.Duration        // moving average of the call to the worker
	removed map[string]bool      // workers scale-down took out, not to be re-added by a stale read
	fresh   map[string]bool      // workers a scale-up made that have run nothing yet: their first call is a cold start
	shared  int                  // the function version's running executions on every engine (shared orchestrators only)
	// detaching: its workers are being released (Engine.DeleteFunction);
	// no new ones are started until they are gone.
	detaching int
}

// waiter is one queued execution. Exactly one of worker and err is sent on
// ch (buffered), by whoever removes the waiter from the queue.
type waiter struct {
	ch    chan grant
	since time.Time
	// forwardable: the request may be passed on to another engine
	// (route.go) should one start the function's workers first.
	forwardable bool
}

type grant struct {
	worker  coord.WorkerRecord
	cold    bool   // the worker was specialised for the queue this call waited in
	forward string // instead of a worker: the engine to pass the execution on to
	err     error
}

func (g grant) result() (coord.WorkerRecord, bool, error) {
	if g.forward != "" {
		return coord.WorkerRecord{}, false, &rpc.Forward{Engine: g.forward}
	}
	return g.worker, g.cold, g.err
}

// state returns (making it) the state of fv; e.mu is held.
func (e *Engine) state(fv coord.FunctionVersion) *fnState {
	st := e.fns[fv]
	if st == nil {
		st = &fnState{busy: map[string]int{}, removed: map[string]bool{}, fresh: map[string]bool{}}
		e.fns[fv] = st
	}
	return st
}

// setWorkers replaces st's workers with the recorded ones (keeping the
// counts of those still there) and hands new free slots to waiters; e.mu is
// held. A worker scale-down took out is not put back by a stale read, nor
// is any while the function's workers are being released.
func (e *Engine) setWorkers(st *fnState, recorded []coord.WorkerRecord) {
	if st.detaching > 0 {
		return
	}
	out := make([]coord.WorkerRecord, 0, len(recorded))
	still := map[string]bool{}
	for _, w := range recorded {
		if st.removed[w.Name] {
			still[w.Name] = true
			continue
		}
		out = append(out, w)
	}
	st.removed = still
	st.workers = out
	e.dispatch(st)
}

// addWorkers appends workers a scale-up made; e.mu is held.
func (e *Engine) addWorkers(st *fnState, ws []coord.WorkerRecord) {
	for _, w := range ws {
		if !slices.ContainsFunc(st.workers, func(x coord.WorkerRecord) bool { return x.Name == w.Name }) {
			st.workers = append(st.workers, w)
			st.fresh[w.Name] = true
		}
	}
	e.dispatch(st)
}

// free returns the least busy worker with a free slot; e.mu is held.
func (e *Engine) free(st *fnState) (coord.WorkerRecord, bool) {
	best, bestLoad := coord.WorkerRecord{}, e.opts.FunctionConcurrency
	for _, w := range st.workers {
		if n := st.busy[w.Name]; n < bestLoad {
			best, bestLoad = w, n
		}
	}
	return best, bestLoad < e.opts.FunctionConcurrency
}

// dispatch hands free slots to the waiters, oldest first; e.mu is held.
func (e *Engine) dispatch(st *fnState) {
	for len(st.waiting) > 0 {
		w, ok := e.free(st)
		if !ok {
			return
		}
		next := st.waiting[0]
		st.waiting = st.waiting[1:]
		next.ch <- grant{worker: w, cold: take(st, w)}
	}
}

// take takes a slot of w for a call and says whether it is w's first (a
// cold start); e.mu is held.
func take(st *fnState, w coord.WorkerRecord) bool {
	st.busy[w.Name]++
	cold := st.fresh[w.Name]
	delete(st.fresh, w.Name)
	return cold
}

// failWaiters ends every waiter with err, when the function has no worker
// and none is coming; e.mu is held.
func (e *Engine) failWaiters(st *fnState, err error) {
	for _, w := range st.waiting {
		w.ch <- grant{err: err}
	}
	st.waiting = nil
}

// acquire returns a worker of f's version with a slot taken for the caller,
// waiting in the function's queue when every slot is taken. A synchronous
// execution waits at most maxWait (its function's timeout) for a busy
// worker to free up, plus the time workers being started take; an
// asynchronous one (maxWait 0) as long as its context lives. The caller gives the slot
// back with release. A waiting execution whose function's workers another
// engine started meanwhile gets an *rpc.Forward error instead (route.go).
func (e *Engine) acquire(ctx context.Context, f *db.Function, version int, maxWait time.Duration) (w coord.WorkerRecord, cold bool, err error) {
	fv := coord.FunctionVersion{FunctionID: f.ID, Version: version}
	_, recorded, err := e.workerRecords(ctx, fv)
	if err != nil {
		return coord.WorkerRecord{}, false, err
	}
	// On arrival an execution went to a warm owner already
	// (forwardOnArrival); a waiter may still go to one that starts the
	// function's workers while it waits.
	forwardable := e.routable(ctx)
	e.mu.Lock()
	st := e.state(fv)
	st.fn = f
	e.setWorkers(st, recorded)
	if len(st.waiting) == 0 {
		if w, ok := e.free(st); ok {
			cold := take(st, w)
			e.mu.Unlock()
			e.sharedLoad(ctx, fv)
			return w, cold, nil
		}
	}
	me := &waiter{ch: make(chan grant, 1), since: time.Now(), forwardable: forwardable}
	st.waiting = append(st.waiting, me)
	e.mu.Unlock()
	e.autoscale(ctx, fv, "queued")

	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case g := <-me.ch:
			return g.result()
		case <-timeout:
		case <-ctx.Done():
		}
		e.mu.Lock()
		if ctx.Err() == nil && st.scaling > 0 {
			// Workers are being started: the bound is on waiting for busy
			// ones, not on a cold start (which has bounds of its own).
			timeout = time.After(maxWait)
			e.mu.Unlock()
			continue
		}
		i := slices.Index(st.waiting, me)
		if i >= 0 {
			st.waiting = slices.Delete(st.waiting, i, i+1)
		}
		e.mu.Unlock()
		switch {
		case i < 0:
			// A worker (or an error) was handed over as the wait ended.
			return (<-me.ch).result()
		case ctx.Err() != nil:
			return coord.WorkerRecord{}, false, ctx.Err()
		}
		return coord.WorkerRecord{}, false, errdefs.New(errdefs.KindTimeout, "No worker became free within %d s.", int(maxWait.Round(time.Second)/time.Second))
	}
}

// sharedLoad: engines sharing an orchestrator's workers each see only
// their own executions, so one engine's slots may all look free while the
// function's load, all engines' executions as the database counts them,
// needs more workers. It records that count for the autoscaler (loadOf)
// and lets it decide.
func (e *Engine) sharedLoad(ctx context.Context, fv coord.FunctionVersion) {
	if e.engineLocal {
		return
	}
	n, err := e.db.RunningExecutions(ctx, fv.FunctionID, fv.Version)
	if err != nil {
		return // the next execution looks again
	}
	e.mu.Lock()
	st := e.fns[fv]
	if st != nil {
		st.shared = n
	}
	e.mu.Unlock()
	if st != nil {
		e.autoscale(ctx, fv, "shared load")
	}
}

// release gives back the slot acquire took on w, which ran a call for
// took, and hands it to the oldest waiter.
func (e *Engine) release(fv coord.FunctionVersion, w coord.WorkerRecord, took time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.fns[fv]
	if st == nil {
		return
	}
	if st.busy[w.Name]--; st.busy[w.Name] <= 0 {
		delete(st.busy, w.Name)
	}
	if took > 0 {
		// An exponential moving average: recent calls weigh most.
		if st.avgRun == 0 {
			st.avgRun = took
		} else {
			st.avgRun = (st.avgRun*7 + took) / 8
		}
	}
	e.dispatch(st)
}

// dropWorker takes a worker out of dispatch (it died or was released).
func (e *Engine) dropWorker(fv coord.FunctionVersion, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.fns[fv]; st != nil {
		e.dropWorkerLocked(st, name)
	}
}

func (e *Engine) dropWorkerLocked(st *fnState, name string) {
	delete(st.fresh, name)
	st.workers = slices.DeleteFunc(st.workers, func(w coord.WorkerRecord) bool { return w.Name == name })
}

// forgetFunction drops the state of a function version whose workers all
// went (idle expiry, deletion), failing nothing: its waiters, if any, get
// new workers from the ticker's scale-up for a stale queue (scaling.go).
func (e *Engine) forgetFunction(fv coord.FunctionVersion) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.fns[fv]
	if st == nil {
		return
	}
	st.workers = nil
	if len(st.waiting) == 0 && len(st.busy) == 0 && st.scaling == 0 && st.detaching == 0 {
		delete(e.fns, fv)
	}
}

// maxDetachDrain bounds how long releasing a function's workers waits for
// the executions running on them; past it they are stopped as they run.
const maxDetachDrain = 30 * time.Second

// detachPoll is how often drainDetached looks again: releases are rare,
// and polling keeps release() (every execution's path) free of signalling.
const detachPoll = 20 * time.Millisecond

// drainDetached waits, after forgetFunction, until no execution of this
// engine runs on fv's workers and none is being started, for at most the
// function's timeout (bounded by maxDetachDrain). A release that
// killed the workers at once failed the executions an engine had just
// handed them — a detach racing calls that arrived before it (seen in
// tests/functional/disjoint_test.go). Meanwhile new executions queue and
// no worker is started for them (it would be released with the others);
// detached starts them. It reports whether it marked fv detaching, which
// the caller then undoes with detached.
func (e *Engine) drainDetached(ctx context.Context, fv coord.FunctionVersion) bool {
	e.mu.Lock()
	st := e.fns[fv]
	if st == nil {
		e.mu.Unlock()
		return false
	}
	st.detaching++
	wait := maxDetachDrain
	if st.fn != nil && st.fn.Timeout > 0 {
		wait = min(wait, time.Duration(st.fn.Timeout)*time.Second)
	}
	e.mu.Unlock()
	deadline := time.Now().Add(wait)
	for {
		e.mu.Lock()
		idle := len(st.busy) == 0 && st.scaling == 0
		if idle || time.Now().After(deadline) || ctx.Err() != nil {
			// Workers a scale-up begun before the release added meanwhile
			// go with the others.
			st.workers = nil
			e.mu.Unlock()
			if !idle {
				e.log.Warn("releasing workers with executions still running", "function_id", fv.FunctionID, "version", fv.Version, "waited", wait)
			}
			return true
		}
		e.mu.Unlock()
		time.Sleep(detachPoll)
	}
}

// detached ends drainDetached's release of fv: executions that queued
// meanwhile get fresh workers.
func (e *Engine) detached(ctx context.Context, fv coord.FunctionVersion) {
	e.mu.Lock()
	st := e.fns[fv]
	if st == nil {
		e.mu.Unlock()
		return
	}
	st.detaching--
	queued := len(st.waiting) > 0
	if !queued && len(st.busy) == 0 && st.scaling == 0 && st.detaching == 0 {
		delete(e.fns, fv)
	}
	e.mu.Unlock()
	if queued {
		e.autoscale(ctx, fv, "queued during a release")
	}
}
