package engine

import (
	"context"
	"strings"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// Routing (docs/scaling.md, "Several engines"): with an engine-local
// orchestrator only the engine that started a worker can run executions on
// it, so an engine handed an execution of a function whose workers another
// live engine owns passes it on to that engine's own queue (rpc.Forward)
// instead of starting a worker of its own. The owner then sees the whole
// deployment's load for the function and scales for it. An engine scales a
// function itself only when no live engine has workers for it, or for an
// execution that came back from an owner's queue after waiting there too
// long (the owner died, or was too busy to take it): such a request is not
// forwardable again.

// Why an execution was passed on (metrics.ExecutionRouted).
const (
	// routeWarmOwner: on arrival, another engine had workers for it.
	routeWarmOwner = "warm_owner"
	// routeOwnerScaled: it was queued here while another engine started
	// the function's first workers under the function's lock.
	routeOwnerScaled = "owner_scaled"
)

// workerRecords reads fv's worker records: all of them, and those this
// engine can use (all with a shared orchestrator, only its own with an
// engine-local one).
func (e *Engine) workerRecords(ctx context.Context, fv coord.FunctionVersion) (all, usable []coord.WorkerRecord, err error) {
	all, err = e.coord.Workers(ctx, fv)
	if err != nil || !e.engineLocal {
		return all, all, err
	}
	usable = all[:0:0]
	for _, w := range all {
		if w.Owner == e.opts.Name {
			usable = append(usable, w)
		}
	}
	return all, usable, nil
}

// routable says whether the execution being handled may be passed on to
// another engine.
func (e *Engine) routable(ctx context.Context) bool {
	return e.engineLocal && rpc.Forwardable(ctx)
}

// forwardOnArrival returns an *rpc.Forward to the engine owning fv's workers
// when the execution being handled should run there, before anything of it
// is read from the database: the owner reads it itself, so reading it here
// too would be work done twice. A coordination error is no reason to refuse
// the execution: it runs here.
func (e *Engine) forwardOnArrival(ctx context.Context, fv coord.FunctionVersion) error {
	if !e.routable(ctx) {
		return nil
	}
	all, usable, err := e.workerRecords(ctx, fv)
	if err != nil || len(usable) > 0 || len(all) == 0 {
		return nil
	}
	owner := e.routeTarget(ctx, all)
	if owner == "" {
		return nil
	}
	e.routed(ctx, fv, owner, routeWarmOwner, 1)
	return &rpc.Forward{Engine: owner}
}

// routeTarget returns the live engine, other than this one, owning the most
// of all (the function's workers), or "" when this engine owns one of them
// or no owner is alive (its workers died with it; its records go when it
// restarts).
func (e *Engine) routeTarget(ctx context.Context, all []coord.WorkerRecord) string {
	counts := map[string]int{}
	for _, w := range all {
		if w.Owner == e.opts.Name {
			return ""
		}
		if w.Owner != "" {
			counts[w.Owner]++
		}
	}
	if len(counts) == 0 {
		return ""
	}
	instances, err := e.coord.RecentEngines(ctx)
	if err != nil {
		reqctx.Logger(ctx, e.log).Warn("live engines unknown; running the execution here", "error", err)
		return ""
	}
	alive := map[string]bool{}
	for _, in := range instances {
		alive[engineName(in)] = true
	}
	best, most := "", 0
	for owner, n := range counts {
		if alive[owner] && (n > most || n == most && owner < best) {
			best, most = owner, n
		}
	}
	return best
}

// engineName is the engine name of an instance (recovery.go: name#suffix).
func engineName(instance string) string {
	if i := strings.LastIndexByte(instance, '#'); i >= 0 {
		return instance[:i]
	}
	return instance
}

// routed logs and counts executions of fv passed on to owner.
func (e *Engine) routed(ctx context.Context, fv coord.FunctionVersion, owner, reason string, n int) {
	if n == 0 {
		return
	}
	reqctx.Logger(ctx, e.log).Info("route decision", "function_id", fv.FunctionID, "version", fv.Version,
		"rule", reason, "owner", owner, "executions", n)
	for range n {
		e.opts.Metrics.ExecutionRouted(reason)
	}
}

// forwardWaiters hands fv's forwardable waiters to owner, which has just
// started workers for the function, and returns how many; e.mu is held.
func (e *Engine) forwardWaiters(st *fnState, owner string) int {
	kept := st.waiting[:0]
	n := 0
	for _, w := range st.waiting {
		if w.forwardable {
			w.ch <- grant{forward: owner}
			n++
			continue
		}
		kept = append(kept, w)
	}
	clear(st.waiting[len(kept):])
	st.waiting = kept
	return n
}
