// Package engine is qinling-engine's logic: it serves the RPC methods the API
// sends (runtimes, executions, scaling), decides when a function needs
// another worker, and releases idle ones. It is transport- and
// backend-agnostic: the orchestrator, coordinator, storage and RPC transport
// are interfaces chosen by pkg/backends.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/storage"
)

// Options are the engine's settings (from [engine] and friends).
type Options struct {
	// Name identifies this engine in worker records.
	Name string
	// FunctionConcurrency is upstream's scale-up threshold: running
	// executions per worker above which another worker is added.
	FunctionConcurrency int
	// MaxWorkers bounds the workers of one function version.
	MaxWorkers int
	// Expiration is how long a function may stay idle before its workers go.
	Expiration time.Duration
	// ExpirationInterval is how often idle functions are looked for.
	ExpirationInterval time.Duration
	// PublicEndpoint builds package download URLs for remote workers.
	PublicEndpoint string
	// LockWait bounds the wait for a function's scaling lock. It must
	// outlast the lock's lease TTL: a crashed engine's lock is only freed
	// when its lease expires.
	LockWait time.Duration
	// RecoveryInterval is how often executions of vanished engines are
	// looked for (recovery.go); 0 only at start.
	RecoveryInterval time.Duration
	// Metrics counts executions and workers (pkg/metrics); nil counts none.
	Metrics *metrics.Metrics
}

// Engine implements the engine's RPC methods.
type Engine struct {
	db      *db.DB
	orch    orchestrator.Orchestrator
	coord   coord.Coordinator
	storage storage.PackageStorage
	opts    Options
	log     *slog.Logger

	// engineLocal is set when only this engine can use its workers.
	engineLocal bool

	// inflight counts this engine's running executions per worker, to send
	// each new one to the least busy worker; pending counts them per
	// function version from the moment a worker is looked for.
	mu       sync.Mutex
	inflight map[string]int
	pending  map[coord.FunctionVersion]int

	rec recovery
}

// New wires an engine.
func New(d *db.DB, o orchestrator.Orchestrator, c coord.Coordinator, s storage.PackageStorage, opts Options, log *slog.Logger) *Engine {
	if opts.FunctionConcurrency < 1 {
		opts.FunctionConcurrency = 3
	}
	if opts.MaxWorkers < 1 {
		opts.MaxWorkers = 10
	}
	if opts.LockWait <= 0 {
		opts.LockWait = time.Minute
	}
	_, local := o.(orchestrator.EngineLocal)
	return &Engine{db: d, orch: o, coord: c, storage: s, opts: opts, log: log, engineLocal: local,
		inflight: map[string]int{}, pending: map[coord.FunctionVersion]int{}, rec: newRecovery(opts.Name)}
}

var _ rpc.Handler = (*Engine)(nil)

// Handle dispatches one RPC method.
func (e *Engine) Handle(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	decode := func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return errdefs.Invalid("Malformed arguments for %s: %v", method, err)
		}
		return nil
	}
	switch method {
	case MethodCreateRuntime, MethodDeleteRuntime, MethodGetRuntimePool:
		var a RuntimeArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		switch method {
		case MethodCreateRuntime:
			return nil, e.CreateRuntime(ctx, a.RuntimeID)
		case MethodDeleteRuntime:
			return nil, e.DeleteRuntime(ctx, a.RuntimeID)
		default:
			return e.RuntimePool(ctx, a.RuntimeID)
		}
	case MethodUpdateRuntime:
		var a UpdateRuntimeArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return nil, e.UpdateRuntime(ctx, a)
	case MethodCreateExecution:
		var a ExecutionArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return nil, e.CreateExecution(ctx, a)
	case MethodDeleteFunction, MethodScaleUpFunction, MethodScaleDownFunction:
		var a FunctionArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		switch method {
		case MethodDeleteFunction:
			return nil, e.DeleteFunction(ctx, a.FunctionID, a.FunctionVersion)
		case MethodScaleUpFunction:
			return nil, e.ScaleUp(ctx, a)
		default:
			return nil, e.ScaleDown(ctx, a)
		}
	}
	return nil, errdefs.Invalid("Unknown engine method %q.", method)
}

// Start brings the pools of existing runtimes up (after a restart the local
// processes are gone) and starts the idle-worker reaper. With forgetWorkers
// the worker records are dropped first: an all-in-one owns its etcd, and
// every worker it recorded died with the previous process, and so did every
// execution it ran (recovery.go).
func (e *Engine) Start(ctx context.Context, forgetWorkers bool) error {
	if err := e.startRecovery(ctx, forgetWorkers); err != nil {
		return err
	}
	if forgetWorkers {
		fvs, err := e.coord.Functions(ctx)
		if err != nil {
			return err
		}
		for _, fv := range fvs {
			// Workers of a shared backend (Kubernetes pods) outlive this
			// process; forgotten, they would never expire.
			if !e.engineLocal {
				if err := e.orch.DeleteFunction(ctx, fv.FunctionID, fv.Version); err != nil {
					e.log.Warn("release workers of a previous run", "function_id", fv.FunctionID, "version", fv.Version, "error", err)
				}
			}
			if err := e.coord.DeleteFunction(ctx, fv); err != nil {
				return err
			}
		}
	}
	rts, err := e.db.Runtimes(ctx, db.Internal, db.ListOptions{})
	if err != nil {
		return err
	}
	for _, rt := range rts {
		switch rt.Status {
		case db.StatusAvailable:
			// A shared backend's pools (Kubernetes Deployments) outlive
			// engines; rebuilding them at every start would only turn a
			// short outage of the cluster into runtimes in error.
			if !e.engineLocal {
				continue
			}
			go func() { _ = e.CreateRuntime(ctx, rt.ID) }()
		case db.StatusCreating, db.StatusUpgrading:
			go func() { _ = e.CreateRuntime(ctx, rt.ID) }()
		case db.StatusDeleting:
			go func() { _ = e.DeleteRuntime(ctx, rt.ID) }()
		}
	}
	go e.reapIdle(ctx)
	return nil
}

// CreateRuntime builds the runtime's pool and records the outcome.
func (e *Engine) CreateRuntime(ctx context.Context, id string) error {
	log := reqctx.Logger(ctx, e.log).With("runtime_id", id)
	rt, err := e.db.Runtime(ctx, db.Internal, id)
	if err != nil {
		return err
	}
	err = e.orch.CreatePool(ctx, orchestrator.Runtime{ID: rt.ID, Image: rt.Image, Trusted: rt.Trusted})
	if err != nil {
		log.Error("runtime pool failed", "image", rt.Image, "error", err)
		values := map[string]any{"status": db.StatusError}
		// The reason goes where the CLI shows it, unless the operator wrote a
		// description of their own.
		if rt.Description == nil || *rt.Description == "" {
			values["description"] = db.FitRuntimeDescription("Runtime pool failed: " + err.Error())
		}
		return e.db.UpdateRuntime(ctx, id, values)
	}
	log.Info("runtime available", "image", rt.Image)
	return e.db.UpdateRuntime(ctx, id, map[string]any{"status": db.StatusAvailable})
}

// UpdateRuntime rebuilds the pool with the new image; if the new image
// cannot run, the pool comes back with the previous one and the runtime's
// image is put back, as upstream's rollback.
func (e *Engine) UpdateRuntime(ctx context.Context, a UpdateRuntimeArgs) error {
	log := reqctx.Logger(ctx, e.log).With("runtime_id", a.RuntimeID)
	rt, err := e.db.Runtime(ctx, db.Internal, a.RuntimeID)
	if err != nil {
		return err
	}
	// A backend that updates a pool in place (a rolling update) keeps the
	// old workers serving until the new ones are up; the others start over.
	build := e.orch.CreatePool
	if u, ok := e.orch.(orchestrator.PoolUpdater); ok {
		build = u.UpdatePool
	} else if err := e.orch.DeletePool(ctx, rt.ID); err != nil && !errors.Is(err, orchestrator.ErrPoolNotFound) {
		log.Error("runtime update: delete old pool", "error", err)
	}
	values := map[string]any{"status": db.StatusAvailable}
	if err := build(ctx, orchestrator.Runtime{ID: rt.ID, Image: a.Image, Trusted: rt.Trusted}); err != nil {
		log.Error("runtime update failed, rolling back", "image", a.Image, "error", err)
		values["image"] = a.PreImage
		if rerr := build(ctx, orchestrator.Runtime{ID: rt.ID, Image: a.PreImage, Trusted: rt.Trusted}); rerr != nil {
			log.Error("runtime rollback failed", "image", a.PreImage, "error", rerr)
			values["status"] = db.StatusError
		}
	} else {
		log.Info("runtime updated", "image", a.Image)
	}
	return e.db.UpdateRuntime(ctx, rt.ID, values)
}

// ensurePool builds this engine's pool of an available runtime.
func (e *Engine) ensurePool(ctx context.Context, runtimeID string) error {
	rt, err := e.db.Runtime(ctx, db.Internal, runtimeID)
	if err != nil {
		return err
	}
	if err := rt.CheckAvailable(); err != nil {
		return err
	}
	return e.orch.CreatePool(ctx, orchestrator.Runtime{ID: rt.ID, Image: rt.Image, Trusted: rt.Trusted})
}

// DeleteRuntime removes the pool, then the row.
func (e *Engine) DeleteRuntime(ctx context.Context, id string) error {
	if err := e.orch.DeletePool(ctx, id); err != nil && !errors.Is(err, orchestrator.ErrPoolNotFound) {
		reqctx.Logger(ctx, e.log).Error("delete runtime pool", "runtime_id", id, "error", err)
		return errdefs.Wrap(errdefs.KindInternal, err, "delete pool")
	}
	return e.db.DeleteRuntime(ctx, id)
}

// RuntimePool reports the pool's capacity. An engine whose orchestrator has
// no pool for an available runtime (another engine built it) builds its own
// first, as it would on its first execution.
func (e *Engine) RuntimePool(ctx context.Context, id string) (orchestrator.Capacity, error) {
	cp, err := e.orch.Pool(ctx, id)
	if errors.Is(err, orchestrator.ErrPoolNotFound) {
		if perr := e.ensurePool(ctx, id); perr == nil {
			cp, err = e.orch.Pool(ctx, id)
		}
	}
	if errors.Is(err, orchestrator.ErrPoolNotFound) {
		return cp, errdefs.NotFound("Runtime not found [id=%s]", id)
	}
	return cp, err
}

func lockName(fv coord.FunctionVersion) string {
	return fmt.Sprintf("function_worker_%s_%d", fv.FunctionID, fv.Version)
}

// pickWorker applies upstream's load check — add a worker when there is
// none or when running executions per worker exceed function_concurrency —
// and returns the least busy worker. The check runs first without the lock;
// only a decision to scale takes the function's lock (and is made again
// under it), so the common case costs no lock round trips.
func (e *Engine) pickWorker(ctx context.Context, f *db.Function, version int) (coord.WorkerRecord, error) {
	fv := coord.FunctionVersion{FunctionID: f.ID, Version: version}
	workers, grow, err := e.loadCheck(ctx, fv)
	if err != nil {
		return coord.WorkerRecord{}, err
	}
	if grow {
		lctx, cancel := context.WithTimeout(ctx, e.opts.LockWait)
		defer cancel()
		unlock, err := e.coord.Lock(lctx, lockName(fv))
		if err != nil {
			return coord.WorkerRecord{}, err
		}
		defer unlock()
		if workers, grow, err = e.loadCheck(ctx, fv); err != nil {
			return coord.WorkerRecord{}, err
		}
		if grow {
			added, err := e.scaleUp(ctx, f, version, 1)
			if err != nil && len(workers) == 0 {
				return coord.WorkerRecord{}, err
			}
			workers = append(workers, added...)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	best, bestLoad := workers[0], math.MaxInt
	for _, w := range workers {
		if n := e.inflight[w.Name]; n < bestLoad {
			best, bestLoad = w, n
		}
	}
	return best, nil
}

// loadCheck reads a function version's workers and running executions and
// says whether it needs another worker. With an engine-local orchestrator
// only this engine's workers count, and the load is this engine's own
// executions in flight on them (the database's running count includes other
// engines' executions, on workers this engine cannot use).
func (e *Engine) loadCheck(ctx context.Context, fv coord.FunctionVersion) ([]coord.WorkerRecord, bool, error) {
	workers, err := e.coord.Workers(ctx, fv)
	if err != nil {
		return nil, false, err
	}
	var running int
	if e.engineLocal {
		own := workers[:0:0]
		for _, w := range workers {
			if w.Owner == e.opts.Name {
				own = append(own, w)
			}
		}
		workers = own
		e.mu.Lock()
		running = e.pending[fv]
		e.mu.Unlock()
	} else if running, err = e.db.RunningExecutions(ctx, fv.FunctionID, fv.Version); err != nil {
		return nil, false, err
	}
	load := float64(max(running, 1)) / float64(max(len(workers), 1))
	grow := len(workers) == 0 || (load > float64(e.opts.FunctionConcurrency) && len(workers) < e.opts.MaxWorkers)
	return workers, grow, nil
}

// scaleUp specialises count workers and records them.
func (e *Engine) scaleUp(ctx context.Context, f *db.Function, version, count int) ([]coord.WorkerRecord, error) {
	spec := e.spec(f, version)
	start := time.Now()
	ws, err := e.orch.ScaleUp(ctx, spec, count)
	if errors.Is(err, orchestrator.ErrPoolNotFound) && spec.RuntimeID != "" {
		// Another engine handled create_runtime; with a per-engine
		// orchestrator (local) this engine builds its own pool on first use.
		if err = e.ensurePool(ctx, spec.RuntimeID); err == nil {
			ws, err = e.orch.ScaleUp(ctx, spec, count)
		}
	}
	if err != nil {
		return nil, err
	}
	fv := coord.FunctionVersion{FunctionID: f.ID, Version: version}
	out := make([]coord.WorkerRecord, 0, len(ws))
	for _, w := range ws {
		rec := coord.WorkerRecord{Name: w.Name, Address: w.Address, Owner: e.opts.Name}
		if err := e.coord.AddWorker(ctx, fv, rec); err != nil {
			_ = e.orch.DeleteWorker(ctx, w)
			return out, err
		}
		out = append(out, rec)
	}
	e.opts.Metrics.ColdStart(f.ProjectID, f.ID, len(out), time.Since(start))
	reqctx.Logger(ctx, e.log).Info("function scaled up", "function_id", f.ID, "version", version, "added", len(out))
	return out, nil
}

// ScaleUp adds workers on an admin's request.
func (e *Engine) ScaleUp(ctx context.Context, a FunctionArgs) error {
	f, err := e.db.Function(ctx, db.Internal, a.FunctionID)
	if err != nil {
		return err
	}
	_, err = e.scaleUp(ctx, f, a.FunctionVersion, max(a.Count, 1))
	return err
}

// ScaleDown removes up to count workers, oldest first, always keeping one.
func (e *Engine) ScaleDown(ctx context.Context, a FunctionArgs) error {
	fv := coord.FunctionVersion{FunctionID: a.FunctionID, Version: a.FunctionVersion}
	unlock, err := e.coord.Lock(ctx, lockName(fv))
	if err != nil {
		return err
	}
	defer unlock()
	workers, err := e.coord.Workers(ctx, fv)
	if err != nil {
		return err
	}
	n := min(max(a.Count, 1), len(workers)-1)
	for _, w := range workers[:max(n, 0)] {
		e.forgetWorker(ctx, fv, w)
	}
	return nil
}

// forgetWorker drops a worker from the records and stops it.
func (e *Engine) forgetWorker(ctx context.Context, fv coord.FunctionVersion, w coord.WorkerRecord) {
	if err := e.coord.RemoveWorker(ctx, fv, w.Name); err != nil {
		reqctx.Logger(ctx, e.log).Warn("remove worker record", "worker", w.Name, "error", err)
	}
	if err := e.orch.DeleteWorker(ctx, orchestrator.Worker{Name: w.Name, Address: w.Address}); err != nil {
		reqctx.Logger(ctx, e.log).Warn("delete worker", "worker", w.Name, "error", err)
	}
}

// DeleteFunction releases every worker of a function version.
func (e *Engine) DeleteFunction(ctx context.Context, functionID string, version int) error {
	fv := coord.FunctionVersion{FunctionID: functionID, Version: version}
	if err := e.coord.DeleteFunction(ctx, fv); err != nil {
		return err
	}
	return e.orch.DeleteFunction(ctx, functionID, version)
}
