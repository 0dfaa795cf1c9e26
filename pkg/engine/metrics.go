package engine

import (
	"context"
	"errors"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/metrics"
)

// metrics is what the metrics count of an execution this engine finished:
// its row (cur), the status it ended with and the worker's result.
func (t Timing) metrics(cur *db.Execution, status string, res orchestrator.Result) metrics.Finished {
	f := metrics.Finished{
		ProjectID: cur.ProjectID, Status: status, Reason: t.failReason,
		Duration:   time.Duration(res.Duration * float64(time.Second)),
		MemorySize: t.MemorySize,
	}
	if cur.FunctionID != nil {
		f.FunctionID = *cur.FunctionID
	}
	// Only an execution that reached a worker waited for one.
	if t.ran {
		f.Wait = time.Duration((t.QueueMS + t.AcquireMS) * float64(time.Millisecond))
	}
	return f
}

// endedByStop is what the metrics count of an execution ended because its
// engine stopped or vanished.
func endedByStop(cur *db.Execution) metrics.Finished {
	return Timing{failReason: metrics.ReasonEngineStopped}.metrics(cur, db.StatusError, orchestrator.Result{})
}

// Workers is the engine's workers now, for the metrics' function_workers
// and pool_workers: the workers it started, per function, and the pools of
// its orchestrator (shared ones, Kubernetes', are the same on every engine).
func (e *Engine) Workers(ctx context.Context) (metrics.Workers, error) {
	w := metrics.Workers{PerFunction: map[string]int{}, Pools: map[string]map[string]int{}}
	fvs, err := e.coord.Functions(ctx)
	if err != nil {
		return w, err
	}
	for _, fv := range fvs {
		recs, err := e.coord.Workers(ctx, fv)
		if err != nil {
			return w, err
		}
		for _, r := range recs {
			if r.Owner == e.opts.Name {
				w.PerFunction[fv.FunctionID]++
			}
		}
	}
	rts, err := e.db.Runtimes(ctx, db.Internal, db.ListOptions{})
	if err != nil {
		return w, err
	}
	for _, rt := range rts {
		c, err := e.orch.Pool(ctx, rt.ID)
		if errors.Is(err, orchestrator.ErrPoolNotFound) {
			continue
		}
		if err != nil {
			return w, err
		}
		w.Pools[rt.ID] = map[string]int{metrics.PoolAvailable: c.Available, metrics.PoolUnavailable: c.Total - c.Available}
	}
	return w, nil
}
