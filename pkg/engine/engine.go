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
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// Options are the engine's settings (from [engine] and friends).
type Options struct {
	// Name identifies this engine in worker records.
	Name string
	// FunctionConcurrency is the most executions one worker runs at once
	// (dispatch.go); more wait in the function's queue.
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
	// Scaling is the autoscaler's (scaling.go).
	Scaling ScalingOptions
	// Metrics counts executions and workers (pkg/metrics); nil counts none.
	Metrics *metrics.Metrics
	// Swift fetches the code of swift functions through their owners'
	// trusts; nil without Keystone, where such functions cannot exist.
	Swift swiftcode.Source
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

	// fns is this engine's dispatch state per function version: workers,
	// their running executions and the queue (dispatch.go).
	mu  sync.Mutex
	fns map[coord.FunctionVersion]*fnState

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
	opts.Scaling.setDefaults(opts.FunctionConcurrency)
	_, local := o.(orchestrator.EngineLocal)
	return &Engine{db: d, orch: o, coord: c, storage: s, opts: opts, log: log, engineLocal: local,
		fns: map[coord.FunctionVersion]*fnState{}, rec: newRecovery(opts.Name)}
}

var _ rpc.ArgsHandler = (*Engine)(nil)

// Handle dispatches one RPC method.
func (e *Engine) Handle(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	return e.handle(ctx, method, func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return errdefs.Invalid("Malformed arguments for %s: %v", method, err)
		}
		return nil
	})
}

// HandleValue is Handle for arguments handed across in one process
// (rpc.ValueHandler): a caller of this package passes the Args types below.
func (e *Engine) HandleValue(ctx context.Context, method string, args any) (any, error) {
	return e.handle(ctx, method, func(v any) error {
		if err := rpc.Assign(args, v); err != nil {
			return errdefs.Invalid("Malformed arguments for %s: %v", method, err)
		}
		return nil
	})
}

// NewArgs is the argument type of each method (rpc.ArgsHandler): the
// RabbitMQ transport decodes a request's arguments straight into it.
func (e *Engine) NewArgs(method string) any {
	switch method {
	case MethodCreateRuntime, MethodDeleteRuntime, MethodGetRuntimePool:
		return new(RuntimeArgs)
	case MethodUpdateRuntime:
		return new(UpdateRuntimeArgs)
	case MethodCreateExecution:
		return new(ExecutionArgs)
	case MethodDeleteFunction, MethodScaleUpFunction, MethodScaleDownFunction:
		return new(FunctionArgs)
	}
	return nil
}

func (e *Engine) handle(ctx context.Context, method string, decode func(v any) error) (any, error) {
	args := e.NewArgs(method)
	if args == nil {
		return nil, errdefs.Invalid("Unknown engine method %q.", method)
	}
	if err := decode(args); err != nil {
		return nil, err
	}
	switch a := args.(type) {
	case *RuntimeArgs:
		switch method {
		case MethodCreateRuntime:
			return nil, e.CreateRuntime(ctx, a.RuntimeID)
		case MethodDeleteRuntime:
			return nil, e.DeleteRuntime(ctx, a.RuntimeID)
		default:
			return e.RuntimePool(ctx, a.RuntimeID)
		}
	case *UpdateRuntimeArgs:
		return nil, e.UpdateRuntime(ctx, *a)
	case *ExecutionArgs:
		out, err := e.RunExecution(ctx, *a)
		if out == nil {
			// No "null" reply: an API reads the row when the reply is empty.
			return nil, err
		}
		return out, err
	case *FunctionArgs:
		switch method {
		case MethodDeleteFunction:
			return nil, e.DeleteFunction(ctx, a.FunctionID, a.FunctionVersion)
		case MethodScaleUpFunction:
			return nil, e.ScaleUp(ctx, *a)
		default:
			return nil, e.ScaleDown(ctx, *a)
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
	if !forgetWorkers && e.engineLocal {
		if err := e.forgetOwnWorkers(ctx); err != nil {
			return err
		}
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
			go e.rebuildPool(ctx, rt)
		case db.StatusCreating, db.StatusUpgrading:
			go func() { _ = e.CreateRuntime(ctx, rt.ID) }()
		case db.StatusDeleting:
			go func() { _ = e.DeleteRuntime(ctx, rt.ID) }()
		}
	}
	go e.reapIdle(ctx)
	go e.scaleLoop(ctx)
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

// rebuildPool builds, at start, this engine's own pool of a runtime that
// is available. A failure is this engine's alone (its workers were slow to
// start on a loaded machine): the runtime stays available for the other
// engines, and this one builds the pool on first use (scaleUp). Marking the
// runtime error here failed every engine's executions of it (the chaos
// suite found 707 "Runtime ... is not available." after an engine restart).
func (e *Engine) rebuildPool(ctx context.Context, rt db.Runtime) {
	err := e.orch.CreatePool(ctx, orchestrator.Runtime{ID: rt.ID, Image: rt.Image, Trusted: rt.Trusted})
	if err != nil {
		e.log.Warn("runtime pool not rebuilt at start; built on first use", "runtime_id", rt.ID, "error", err)
	}
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
	added, err := e.scaleUp(ctx, f, a.FunctionVersion, max(a.Count, 1))
	e.mu.Lock()
	st := e.state(coord.FunctionVersion{FunctionID: a.FunctionID, Version: a.FunctionVersion})
	st.fn = f
	e.addWorkers(st, added)
	e.mu.Unlock()
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

// forgetOwnWorkers drops the records of workers an earlier process of this
// engine made. With an engine-local orchestrator they died with it
// (orchestrator/local: Pdeathsig), and a restarted engine of the same name
// would otherwise pick them and fail executions with "worker not found"
// (found by the chaos suite, docs/reliability.md).
func (e *Engine) forgetOwnWorkers(ctx context.Context) error {
	fvs, err := e.coord.Functions(ctx)
	if err != nil {
		return err
	}
	for _, fv := range fvs {
		workers, err := e.coord.Workers(ctx, fv)
		if err != nil {
			return err
		}
		for _, w := range workers {
			if w.Owner != e.opts.Name {
				continue
			}
			if err := e.coord.RemoveWorker(ctx, fv, w.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// forgetWorker drops a worker from the records and stops it.
func (e *Engine) forgetWorker(ctx context.Context, fv coord.FunctionVersion, w coord.WorkerRecord) {
	e.dropWorker(fv, w.Name)
	if err := e.coord.RemoveWorker(ctx, fv, w.Name); err != nil {
		reqctx.Logger(ctx, e.log).Warn("remove worker record", "worker", w.Name, "error", err)
	}
	if err := e.orch.DeleteWorker(ctx, orchestrator.Worker{Name: w.Name, Address: w.Address}); err != nil {
		reqctx.Logger(ctx, e.log).Warn("delete worker", "worker", w.Name, "error", err)
	}
}

// DeleteFunction releases every worker of a function version. Executions
// already running on them finish first (drainDetached): a detach or an
// update only means that the next execution gets a fresh worker.
func (e *Engine) DeleteFunction(ctx context.Context, functionID string, version int) error {
	fv := coord.FunctionVersion{FunctionID: functionID, Version: version}
	if err := e.coord.DeleteFunction(ctx, fv); err != nil {
		return err
	}
	e.forgetFunction(fv)
	drained := e.drainDetached(ctx, fv)
	err := e.orch.DeleteFunction(ctx, functionID, version)
	if drained {
		e.detached(ctx, fv)
	}
	return err
}
