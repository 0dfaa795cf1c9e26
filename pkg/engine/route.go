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
	// routeAPIOwner: qinling-api sent a sync execution straight to the
	// owner's queue (Client.owner), so no engine had to pass it on.
	routeAPIOwner = "api_owner"
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
	if !ownedByOthers(e.opts.Name, all) {
		return ""
	}
	instances, err := e.coord.RecentEngines(ctx)
	if err != nil {
		reqctx.Logger(ctx, e.log).Warn("live engines unknown; running the execution here", "error", err)
		return ""
	}
	return Owner(e.opts.Name, all, instances)
}

// ownedByOthers says whether some of all has an owner and none is self, so
// that Owner could name an engine (checked before asking for the engines).
func ownedByOthers(self string, all []coord.WorkerRecord) bool {
	owned := false
	for _, w := range all {
		if self != "" && w.Owner == self {
			return false
		}
		owned = owned || w.Owner != ""
	}
	return owned
}

// Owner is the routing decision: of a function version's workers all, the
// live engine (instances: coord's registrations) other than self owning the
// most of them, the smallest name on a tie; "" when self owns one of them
// (it runs the execution) or no owner is alive (its workers died with it).
// self is "" for qinling-api, which owns no worker.
func Owner(self string, all []coord.WorkerRecord, instances []string) string {
	counts := map[string]int{}
	for _, w := range all {
		if self != "" && w.Owner == self {
			return ""
		}
		if w.Owner != "" {
			counts[w.Owner]++
		}
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

// owner returns the engine owning the warm workers of a's function version
// and the transport's way to reach it, for qinling-api to send a sync
// execution straight to that engine's queue: the same decision an engine
// makes on arrival (forwardOnArrival), taken one hop earlier. Both reads
// come from the coordinator's mirror (pkg/coord/etcd/mirror.go), no round
// trip. "" (the shared queue, where any engine takes it and routes it as
// before) when routing is off, the transport cannot address one engine, no
// live engine owns a worker, or the coordinator cannot say.
func (c Client) owner(ctx context.Context, a ExecutionArgs) (rpc.EngineCaller, string) {
	ec, ok := c.RPC.(rpc.EngineCaller)
	if !ok || c.Owners == nil {
		return nil, ""
	}
	all, err := c.Owners.Workers(ctx, coord.FunctionVersion{FunctionID: a.FunctionID, Version: a.FunctionVersion})
	if err != nil || !ownedByOthers("", all) {
		return nil, ""
	}
	instances, err := c.Owners.RecentEngines(ctx)
	if err != nil {
		return nil, ""
	}
	return ec, Owner("", all, instances)
}
