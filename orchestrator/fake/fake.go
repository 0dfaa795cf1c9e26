// Package fake is an in-memory orchestrator.Orchestrator for engine unit
// tests: functions are Go handlers registered per entry, failures are
// scripted, and every call is recorded. It passes the same conformance suite
// (orchestratortest) as the real backends, so engine tests written against it
// see the behaviour they will meet in production, including a worker that goes
// away after one of its executions timed out.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
)

// Handler plays a function: it receives the invocation and returns what the
// worker would report. A handler that runs past inv.Timeout is abandoned and
// the execution reported as timed out.
type Handler func(inv orchestrator.Invocation) orchestrator.Result

// Errors are returned by the corresponding methods while set (nil = behave
// normally). Set them with Orchestrator.SetErrors.
type Errors struct {
	CreatePoolErr     error
	DeletePoolErr     error
	PoolErr           error
	ScaleUpErr        error
	RunErr            error
	DeleteWorkerErr   error
	DeleteFunctionErr error
}

// ScaleUpCall records one ScaleUp.
type ScaleUpCall struct {
	FunctionID string
	Version    int
	RuntimeID  string
	Count      int
	MD5        string // the package checksum the engine claimed
}

// FunctionVersion names one version of a function.
type FunctionVersion struct {
	FunctionID string
	Version    int
}

// RunCall records one Run.
type RunCall struct {
	Worker     string
	Invocation orchestrator.Invocation
}

// Calls is what the orchestrator was asked to do, in call order.
type Calls struct {
	CreatePool       []orchestrator.Runtime
	DeletePool       []string
	ScaleUp          []ScaleUpCall
	Run              []RunCall
	DeletedWorkers   []string
	DeletedFunctions []FunctionVersion
}

// Config sets up a fake.
type Config struct {
	// PoolSize is the free capacity each pool reports; ScaleUp takes workers
	// from it and the pool refills at once.
	PoolSize int
	// Runnable says whether CreatePool accepts an image. Nil accepts every
	// image except those containing "unrunnable".
	Runnable func(image string) bool
}

// Orchestrator is the fake. Create it with New; it is safe for concurrent use.
type Orchestrator struct {
	cfg Config

	mu       sync.Mutex
	handlers map[string]Handler
	errs     Errors
	runErrs  []error // queued by FailRuns, consumed one per Run
	pools    map[string]orchestrator.Runtime
	workers  map[string]*worker
	calls    Calls
	seq      int
}

type worker struct {
	name      string
	runtimeID string
	fn        FunctionVersion
	entry     string
}

var _ orchestrator.Orchestrator = (*Orchestrator)(nil)

// New returns an empty fake.
func New(cfg Config) *Orchestrator {
	return &Orchestrator{
		cfg:      cfg,
		handlers: map[string]Handler{},
		pools:    map[string]orchestrator.Runtime{},
		workers:  map[string]*worker{},
	}
}

// Handle registers the handler run for invocations whose entry is entry.
// Invocations of an entry without a handler fail like a missing module.
func (f *Orchestrator) Handle(entry string, h Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[entry] = h
}

// SetErrors replaces the scripted errors.
func (f *Orchestrator) SetErrors(e Errors) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = e
}

// FailRuns makes the next len(errs) Runs return these errors in order, before
// RunErr is considered; nothing runs for them. Use it to test retries.
func (f *Orchestrator) FailRuns(errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runErrs = append(f.runErrs, errs...)
}

// Calls returns a copy of the calls recorded so far.
func (f *Orchestrator) Calls() Calls {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	c.CreatePool = append([]orchestrator.Runtime(nil), c.CreatePool...)
	c.DeletePool = append([]string(nil), c.DeletePool...)
	c.ScaleUp = append([]ScaleUpCall(nil), c.ScaleUp...)
	c.Run = append([]RunCall(nil), c.Run...)
	c.DeletedWorkers = append([]string(nil), c.DeletedWorkers...)
	c.DeletedFunctions = append([]FunctionVersion(nil), c.DeletedFunctions...)
	return c
}

// Workers returns the names of the live specialised workers of a function
// version, in creation order.
func (f *Orchestrator) Workers(functionID string, version int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for i := 1; i <= f.seq; i++ {
		if w, ok := f.workers[workerName(i)]; ok && w.fn == (FunctionVersion{functionID, version}) {
			names = append(names, w.name)
		}
	}
	return names
}

// Kill makes a worker vanish as if its process died: later Runs on it return
// ErrWorkerNotFound. It is not recorded as a deletion.
func (f *Orchestrator) Kill(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.workers, name)
}

func workerName(i int) string { return fmt.Sprintf("fake-worker-%d", i) }

func (f *Orchestrator) runnable(image string) bool {
	if f.cfg.Runnable != nil {
		return f.cfg.Runnable(image)
	}
	return !strings.Contains(image, "unrunnable")
}

// CreatePool implements orchestrator.Orchestrator.
func (f *Orchestrator) CreatePool(_ context.Context, rt orchestrator.Runtime) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.CreatePool = append(f.calls.CreatePool, rt)
	if f.errs.CreatePoolErr != nil {
		return f.errs.CreatePoolErr
	}
	if !f.runnable(rt.Image) {
		return fmt.Errorf("create pool %s: %w: image %q is not runnable by the fake orchestrator", rt.ID, orchestrator.ErrImageNotRunnable, rt.Image)
	}
	f.pools[rt.ID] = rt
	return nil
}

// DeletePool implements orchestrator.Orchestrator.
func (f *Orchestrator) DeletePool(_ context.Context, runtimeID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.DeletePool = append(f.calls.DeletePool, runtimeID)
	if f.errs.DeletePoolErr != nil {
		return f.errs.DeletePoolErr
	}
	delete(f.pools, runtimeID)
	for name, w := range f.workers {
		if w.runtimeID == runtimeID {
			delete(f.workers, name)
		}
	}
	return nil
}

// Pool implements orchestrator.Orchestrator.
func (f *Orchestrator) Pool(_ context.Context, runtimeID string) (orchestrator.Capacity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs.PoolErr != nil {
		return orchestrator.Capacity{}, f.errs.PoolErr
	}
	if _, ok := f.pools[runtimeID]; !ok {
		return orchestrator.Capacity{}, fmt.Errorf("pool %s: %w", runtimeID, orchestrator.ErrPoolNotFound)
	}
	c := orchestrator.Capacity{Total: f.cfg.PoolSize, Available: f.cfg.PoolSize}
	for _, w := range f.workers {
		if w.runtimeID == runtimeID {
			c.Total++
		}
	}
	return c, nil
}

// ScaleUp implements orchestrator.Orchestrator.
func (f *Orchestrator) ScaleUp(_ context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.ScaleUp = append(f.calls.ScaleUp, ScaleUpCall{FunctionID: fn.ID, Version: fn.Version, RuntimeID: fn.RuntimeID, Count: count, MD5: fn.Package.MD5})
	if f.errs.ScaleUpErr != nil {
		return nil, f.errs.ScaleUpErr
	}
	if _, ok := f.pools[fn.RuntimeID]; !ok {
		return nil, fmt.Errorf("scale up function %s: pool %s: %w", fn.ID, fn.RuntimeID, orchestrator.ErrPoolNotFound)
	}
	if count <= 0 {
		return nil, fmt.Errorf("scale up function %s: count %d must be positive", fn.ID, count)
	}
	out := make([]orchestrator.Worker, 0, count)
	for range count {
		f.seq++
		w := &worker{name: workerName(f.seq), runtimeID: fn.RuntimeID, fn: FunctionVersion{fn.ID, fn.Version}, entry: fn.Entry}
		f.workers[w.name] = w
		out = append(out, orchestrator.Worker{Name: w.name, Address: "fake://" + w.name})
	}
	return out, nil
}

// Run implements orchestrator.Orchestrator. The handler of inv.Entry runs in
// its own goroutine; if it outlives inv.Timeout the execution is reported
// timed out and the worker removed, as the real runtime exits after a timeout.
func (f *Orchestrator) Run(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) (orchestrator.Result, error) {
	f.mu.Lock()
	f.calls.Run = append(f.calls.Run, RunCall{Worker: w.Name, Invocation: inv})
	if len(f.runErrs) > 0 {
		err := f.runErrs[0]
		f.runErrs = f.runErrs[1:]
		f.mu.Unlock()
		return orchestrator.Result{}, err
	}
	if err := f.errs.RunErr; err != nil {
		f.mu.Unlock()
		return orchestrator.Result{}, err
	}
	if _, ok := f.workers[w.Name]; !ok {
		f.mu.Unlock()
		return orchestrator.Result{}, fmt.Errorf("run on worker %s: %w", w.Name, orchestrator.ErrWorkerNotFound)
	}
	h := f.handlers[inv.Entry]
	f.mu.Unlock()

	if h == nil {
		return failure(fmt.Sprintf("No module named %q", inv.Entry), 0), nil
	}
	start := time.Now()
	done := make(chan orchestrator.Result, 1)
	go func() { done <- h(inv) }()
	var timeout <-chan time.Time
	if inv.Timeout > 0 {
		t := time.NewTimer(inv.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case res := <-done:
		if res.Duration == 0 {
			res.Duration = time.Since(start).Seconds()
		}
		return res, nil
	case <-timeout:
		f.Kill(w.Name)
		return failure("Function execution timeout.", inv.Timeout.Seconds()), nil
	case <-ctx.Done():
		return orchestrator.Result{}, fmt.Errorf("run on worker %s: %w", w.Name, ctx.Err())
	}
}

// failure is a failed Result with a message as output.
func failure(msg string, duration float64) orchestrator.Result {
	out, _ := json.Marshal(msg)
	return orchestrator.Result{Success: false, Output: out, Duration: duration}
}

// DeleteWorker implements orchestrator.Orchestrator.
func (f *Orchestrator) DeleteWorker(_ context.Context, w orchestrator.Worker) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.DeletedWorkers = append(f.calls.DeletedWorkers, w.Name)
	if f.errs.DeleteWorkerErr != nil {
		return f.errs.DeleteWorkerErr
	}
	delete(f.workers, w.Name)
	return nil
}

// DeleteFunction implements orchestrator.Orchestrator.
func (f *Orchestrator) DeleteFunction(_ context.Context, functionID string, version int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fv := FunctionVersion{functionID, version}
	f.calls.DeletedFunctions = append(f.calls.DeletedFunctions, fv)
	if f.errs.DeleteFunctionErr != nil {
		return f.errs.DeleteFunctionErr
	}
	for name, w := range f.workers {
		if w.fn == fv {
			delete(f.workers, name)
		}
	}
	return nil
}

// Close implements orchestrator.Orchestrator; it forgets every pool and worker.
func (f *Orchestrator) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools = map[string]orchestrator.Runtime{}
	f.workers = map[string]*worker{}
	return nil
}
