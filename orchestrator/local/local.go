// Package local is the orchestrator that runs function workers as processes
// on the engine's machine.
//
// A worker is one runtime server process (runtimes/python3/server.py for the
// python3 kind, runtimes/nodejs/server.js for nodejs: nodejs.go) listening on a unix socket in its private directory
// <WorkersDir>/<name>/, in its own process group. With Config.Sandbox it
// runs confined (package sandbox): its own namespaces, a read-only root
// with only the runtime and its package, a private /tmp, an unprivileged
// uid; it is PID 1 of its PID namespace, so killing it kills everything the
// function started. With Config.CgroupParent it has its own cgroup (package
// cgroup): a pids limit from the start, and the function's cpu and memory
// once specialised. An execution that hits a limit fails with a message
// naming it, and the worker is replaced. Each runtime has a pool of
// free, prewarmed workers; ScaleUp takes some, unpacks the function's package
// into their packages/ directory and hands them out, then tops the pool up in
// the background. A worker that exits (the Python runtime exits with status 3
// after one of its executions timed out, since it cannot kill a thread) is
// reaped, its directory removed and the pool refilled; Run on it then reports
// orchestrator.ErrWorkerNotFound.
//
// Each worker directory holds a worker.json record, so several engines may
// share WorkersDir: DeleteWorker and DeleteFunction also stop workers that
// another instance started, and New removes directories of dead workers.
// Workers die with the engine (Pdeathsig).
//
// With strict isolation (Config.Isolation, isolation.go) a worker runs each
// execution in a fresh process forked from a zygote and prepared before
// the call; a timeout or a limit hit then costs only that process, and the
// worker stays. What the zygote has imported (the runtime, or the function
// too) follows a plan made from recent traffic (package preload).
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
	"github.com/qinling-go/qinling/pkg/archive"
)

// Config configures the local orchestrator.
type Config struct {
	// WorkersDir holds the workers' private directories; created 0700. It
	// must be short enough for a unix socket path inside it (about 70 bytes).
	WorkersDir string
	// PoolSize is the number of free, prewarmed workers kept per runtime.
	PoolSize int
	// Python3 is the interpreter that runs the python3 runtime
	// (default /usr/bin/python3).
	Python3 string
	// NodeJS is the executable that runs the nodejs runtime (default
	// /usr/bin/node). It is only needed once a nodejs runtime is created.
	NodeJS string
	// NodeMemoryOverhead is added to a function's memory_size for the
	// cgroup memory limit of a nodejs worker: Node.js itself needs more
	// than upstream's default memory_size before running any function,
	// while the function's JavaScript heap stays limited to memory_size
	// (default DefaultNodeMemoryOverhead; negative: none).
	NodeMemoryOverhead int64
	// RuntimesDir contains python3/server.py and nodejs/server.js.
	// Required unless Command is set.
	RuntimesDir string
	// MaxLogSize and MaxResultSize are passed to the runtime: bytes of an
	// execution's log kept, and the largest JSON result (default 1 MiB each).
	MaxLogSize, MaxResultSize int
	// Owner names this engine in worker records.
	Owner string
	// Logger receives the orchestrator's events and the workers' own output
	// (default slog.Default()).
	Logger *slog.Logger
	// Command, if set, replaces the real runtime: it returns the command that
	// serves the worker protocol on the unix socket sock, reading packages
	// from pkgDir. Its arguments must include sock verbatim, since that is how
	// other instances recognise the worker's process. Tests use it to run the
	// test binary as a fake runtime.
	Command func(kind string, sock, pkgDir string) *exec.Cmd
	// RunGrace is how long past an invocation's timeout a worker may take to
	// answer before it is declared stuck and killed (default 3 s).
	RunGrace time.Duration
	// StartTimeout bounds a worker's start until it answers /ping (default 15 s).
	StartTimeout time.Duration
	// Limits bound package extraction (zero fields: archive defaults).
	Limits archive.Limits
	// Sandbox confines workers; the zero value runs them unconfined.
	Sandbox Sandbox
	// CgroupParent is where workers' cgroups go: relative to the engine's
	// own cgroup, or absolute from each hierarchy's root (package cgroup).
	// Empty: no cgroups, hence no cpu, memory or pids limits.
	CgroupParent string
	// MaxPids bounds the processes and threads of one worker (<= 0: no limit).
	MaxPids int
	// Isolation chooses between warm reuse and strict isolation.
	Isolation Isolation
}

// Defaults for Config fields left zero.
const (
	DefaultPython3       = "/usr/bin/python3"
	DefaultNodeJS        = "/usr/bin/node"
	DefaultLogSize       = 1 << 20
	DefaultResultSize    = 1 << 20
	DefaultRunGrace      = 3 * time.Second
	DefaultStartTimeout  = 15 * time.Second
	readyPollInterval    = 3 * time.Millisecond
	deleteWait           = 5 * time.Second
	maxUnixSocketPathLen = 107 // sun_path is 108 bytes including the NUL
)

// Names inside a worker directory.
const (
	socketName   = "sock"
	packagesName = "packages"
)

var errClosed = errors.New("local orchestrator: closed")

// timeoutOutput is a timed-out execution's output, as JSON.
var timeoutOutput = string(jsonString(workerclient.TimeoutOutput))

// state of a worker; guarded by Orchestrator.mu.
type state int

const (
	stateStarting    state = iota // process started, not yet answering /ping
	stateFree                     // in its pool's free list
	stateReserved                 // taken by a ScaleUp, package being delivered
	stateSpecialised              // handed out by ScaleUp
)

// worker is one runtime process started by this instance.
type worker struct {
	name, runtimeID, kind string
	dir, sock, addr       string
	arg                   string        // identifies its process (see record.Arg)
	cg                    *cgroup.Group // nil without cgroups
	cmd                   *exec.Cmd
	pid                   int
	started               time.Time
	out                   *outputLog
	done                  chan struct{} // closed once reaped and its directory removed
	// memExtra is the runtime's own memory, added to the function's
	// memory_size for the cgroup's limit (NodeMemoryOverhead for nodejs).
	memExtra int64

	// Guarded by Orchestrator.mu.
	state   state
	fnID    string
	version int
	killed  bool          // we sent SIGKILL: its exit is expected
	exited  bool          // the process has exited; its pid must not be signalled any more
	waitErr error         // from cmd.Wait, valid once done is closed
	cpu     int           // cpu limit applied, millicores
	memory  int64         // memory limit applied (the function's memory_size), bytes
	seen    cgroup.Events // limit counters already accounted for
	// draining: it answered a timeout under warm reuse, so it is finishing
	// its other executions and will exit; it takes no new one.
	draining bool

	// Strict isolation (isolation.go); level is the preloading last applied.
	strict  bool
	level   preload.Level
	entry   string
	timeout time.Duration
}

func (w *worker) public() orchestrator.Worker {
	return orchestrator.Worker{Name: w.name, Address: w.addr}
}

func (w *worker) record(owner string) record {
	return record{
		Name: w.name, Runtime: w.runtimeID, Kind: w.kind, Function: w.fnID, Version: w.version,
		PID: w.pid, Owner: owner, Socket: w.sock, Arg: w.arg, Started: w.started,
	}
}

// pool is a runtime's set of free workers.
type pool struct {
	rt       orchestrator.Runtime
	kind     string
	strict   bool // its workers use strict isolation
	free     []*worker
	starting int // workers being started for the free list
}

// Orchestrator is the local orchestrator. Create it with New.
type Orchestrator struct {
	cfg    Config
	log    *slog.Logger
	client *workerclient.Client
	spawn  *spawner
	conf   *confinement
	pre    *preloader
	life   context.Context // ended by Close
	end    context.CancelFunc
	wg     sync.WaitGroup // every goroutine and start in flight

	mu      sync.Mutex
	closed  bool
	pools   map[string]*pool
	workers map[string]*worker
}

var _ orchestrator.Orchestrator = (*Orchestrator)(nil)

// New checks cfg, creates WorkersDir, removes directories of workers whose
// process is gone, and returns an Orchestrator with no pools.
func New(cfg Config) (*Orchestrator, error) {
	if cfg.WorkersDir == "" {
		return nil, errors.New("local orchestrator: WorkersDir is required")
	}
	dir, err := filepath.Abs(cfg.WorkersDir)
	if err != nil {
		return nil, fmt.Errorf("local orchestrator: workers dir: %w", err)
	}
	cfg.WorkersDir = dir
	if n := len(dir) + len("/python3-0123456789abcdef/"+runName+"/") + len(socketName); n > maxUnixSocketPathLen {
		return nil, fmt.Errorf("local orchestrator: workers dir %s is too long for unix socket paths (%d bytes, limit %d); choose a shorter one", dir, n, maxUnixSocketPathLen)
	}
	if cfg.PoolSize < 0 {
		return nil, fmt.Errorf("local orchestrator: pool size %d must not be negative", cfg.PoolSize)
	}
	if cfg.Python3 == "" {
		cfg.Python3 = DefaultPython3
	}
	if cfg.NodeJS == "" {
		cfg.NodeJS = DefaultNodeJS
	}
	switch {
	case cfg.NodeMemoryOverhead == 0:
		cfg.NodeMemoryOverhead = DefaultNodeMemoryOverhead
	case cfg.NodeMemoryOverhead < 0:
		cfg.NodeMemoryOverhead = 0
	}
	if cfg.MaxLogSize <= 0 {
		cfg.MaxLogSize = DefaultLogSize
	}
	if cfg.MaxResultSize <= 0 {
		cfg.MaxResultSize = DefaultResultSize
	}
	if cfg.RunGrace <= 0 {
		cfg.RunGrace = DefaultRunGrace
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	iso := &cfg.Isolation
	if iso.Spares < 0 || iso.Preload.Slots < 0 {
		return nil, fmt.Errorf("local orchestrator: strict spares %d and preload slots %d must not be negative", iso.Spares, iso.Preload.Slots)
	}
	if iso.Preload.Policy == nil {
		iso.Preload.Policy = preload.Traffic{}
	}
	if iso.Preload.Window <= 0 {
		iso.Preload.Window = DefaultPreloadWindow
	}
	if iso.Preload.Interval <= 0 {
		iso.Preload.Interval = DefaultPreloadInterval
	}
	if cfg.Command == nil {
		server := filepath.Join(cfg.RuntimesDir, KindPython3, "server.py")
		if _, err := os.Stat(server); err != nil {
			return nil, fmt.Errorf("local orchestrator: python3 runtime: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
	}
	conf, err := newConfinement(&cfg)
	if err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
	}
	log := cfg.Logger.With("orchestrator", "local")
	removed, err := removeStale(dir, time.Now())
	if err != nil {
		log.Warn("could not remove every stale worker directory", "dir", dir, "error", err)
	}
	if removed > 0 {
		log.Info("removed stale worker directories", "dir", dir, "count", removed)
	}
	life, end := context.WithCancel(context.Background())
	o := &Orchestrator{
		cfg: cfg,
		log: log,
		client: workerclient.New(workerclient.Options{
			// Logs may be JSON-escaped up to 6 bytes per byte; results are
			// measured as JSON already.
			MaxResponseBytes: 6*int64(cfg.MaxLogSize) + int64(cfg.MaxResultSize) + 64<<10,
			MaxResultBytes:   cfg.MaxResultSize,
			MaxLogBytes:      cfg.MaxLogSize,
		}),
		spawn:   newSpawner(life),
		conf:    conf,
		life:    life,
		end:     end,
		pools:   map[string]*pool{},
		workers: map[string]*worker{},
	}
	o.cleanCgroups()
	o.pre = newPreloader(o)
	o.wg.Add(1)
	go o.pre.run()
	log.Info("local orchestrator ready", "sandbox", cfg.Sandbox.Enabled, "cgroup_parent", cfg.CgroupParent, "max_pids", cfg.MaxPids,
		"strict", cfg.Isolation.Strict, "strict_runtimes", cfg.Isolation.StrictRuntimes)
	return o, nil
}

// hold registers work that Close must wait for; false once closed.
func (o *Orchestrator) hold() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.wg.Add(1)
	return true
}

// CreatePool starts PoolSize free workers for rt in parallel and returns once
// they all answer /ping. If one fails the pool is removed again and the error
// carries the worker's output. Creating an existing pool is a no-op.
func (o *Orchestrator) CreatePool(ctx context.Context, rt orchestrator.Runtime) error {
	kind, err := RuntimeKind(rt.Image)
	if err == nil {
		err = o.checkIsolation(rt, kind)
	}
	if err == nil {
		err = o.checkRuntime(kind)
	}
	if err != nil {
		return fmt.Errorf("create pool %s: %w", rt.ID, err)
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return fmt.Errorf("create pool %s: %w", rt.ID, errClosed)
	}
	if _, ok := o.pools[rt.ID]; ok {
		o.mu.Unlock()
		o.refill(rt.ID)
		return nil
	}
	p := &pool{rt: rt, kind: kind, strict: o.strict(rt), starting: o.cfg.PoolSize}
	o.pools[rt.ID] = p
	o.mu.Unlock()

	start := time.Now()
	errs := make([]error, o.cfg.PoolSize)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = o.startFree(ctx, p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = o.DeletePool(context.WithoutCancel(ctx), rt.ID)
		return fmt.Errorf("create pool %s: %w", rt.ID, err)
	}
	o.log.Info("pool ready", "runtime_id", rt.ID, "image", rt.Image, "workers", o.cfg.PoolSize, "elapsed", time.Since(start))
	return nil
}

// startFree starts one worker for p's free list; p.starting already counts it.
func (o *Orchestrator) startFree(ctx context.Context, p *pool) error {
	w, err := o.startWorker(ctx, p)
	o.mu.Lock()
	defer o.mu.Unlock()
	p.starting--
	if err != nil {
		return err
	}
	if o.closed || o.pools[p.rt.ID] != p || w.killed || w.exited {
		o.killLocked(w) // the pool went away while the worker started
		return fmt.Errorf("start worker for pool %s: pool deleted", p.rt.ID)
	}
	w.state = stateFree
	p.free = append(p.free, w)
	return nil
}

// refill starts, in the background, the workers p needs to have PoolSize free.
func (o *Orchestrator) refill(runtimeID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pools[runtimeID]
	if p == nil || o.closed {
		return
	}
	n := o.cfg.PoolSize - len(p.free) - p.starting
	if n <= 0 {
		return
	}
	p.starting += n
	o.wg.Add(n)
	for range n {
		go func() {
			defer o.wg.Done()
			if err := o.startFree(o.life, p); err != nil && !errors.Is(err, errClosed) && o.life.Err() == nil {
				o.log.Warn("could not refill pool", "runtime_id", runtimeID, "error", err)
			}
		}()
	}
}

// startWorker starts a runtime process for p and waits until it answers
// /ping. The worker is registered (so Close and DeletePool can stop it) but
// belongs to no list; the caller decides its state.
func (o *Orchestrator) startWorker(ctx context.Context, p *pool) (*worker, error) {
	if !o.hold() {
		return nil, errClosed
	}
	defer o.wg.Done()

	name := p.kind + "-" + randomHex(8)
	dir := filepath.Join(o.cfg.WorkersDir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	start := time.Now()
	l, cg, err := o.prepare(name, dir, p)
	if err != nil {
		o.destroyCgroup(name, cg)
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	cmd := l.cmd
	// Its own process group, so that killing the group also kills whatever
	// the function started; and death with the engine (see spawner).
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r, wr, err := os.Pipe()
	if err != nil {
		o.destroyCgroup(name, cg)
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = wr, wr
	err = o.spawn.start(ctx, o.life, cmd)
	_ = wr.Close()
	if err != nil {
		_ = r.Close()
		o.destroyCgroup(name, cg)
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}

	w := &worker{
		name: name, runtimeID: p.rt.ID, kind: p.kind,
		dir: dir, sock: l.addr, addr: workerclient.UnixAddress(l.addr), arg: l.arg, cg: cg,
		cmd: cmd, pid: cmd.Process.Pid, started: start,
		out:    newOutputLog(o.log.With("worker", name)),
		done:   make(chan struct{}),
		strict: p.strict, level: preload.Runtime,
		memExtra: o.memoryOverhead(p.kind),
	}
	go w.out.consume(r)
	o.mu.Lock()
	o.workers[name] = w
	o.wg.Add(1) // safe: this start holds the group open
	go o.reap(w)
	if o.closed {
		o.killLocked(w)
		o.mu.Unlock()
		return nil, errClosed
	}
	o.mu.Unlock()

	err = writeRecord(dir, w.record(o.cfg.Owner))
	if err == nil {
		err = o.waitReady(ctx, w)
	}
	if err != nil {
		o.stop(context.WithoutCancel(ctx), w)
		return nil, err
	}
	o.log.Debug("worker ready", "worker", name, "runtime_id", p.rt.ID, "pid", w.pid, "elapsed", time.Since(w.started))
	return w, nil
}

// waitReady polls /ping until the worker answers, exits, or StartTimeout passes.
func (o *Orchestrator) waitReady(ctx context.Context, w *worker) error {
	deadline := time.NewTimer(o.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := o.client.Ping(pctx, w.addr)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-w.done:
			return fmt.Errorf("start worker %s: exited before it was ready (%v); output: %s", w.name, w.waitErr, w.out.Tail())
		case <-deadline.C:
			return fmt.Errorf("start worker %s: not ready after %s (%v); output: %s", w.name, o.cfg.StartTimeout, err, w.out.Tail())
		case <-ctx.Done():
			return fmt.Errorf("start worker %s: %w", w.name, ctx.Err())
		case <-o.life.Done():
			return errClosed
		}
	}
}

// reap waits for the worker's process to exit, kills what is left of its
// process group, removes its directory and forgets it.
func (o *Orchestrator) reap(w *worker) {
	defer o.wg.Done()
	if err := waitExited(w.pid); err != nil {
		o.log.Error("waiting for worker", "worker", w.name, "pid", w.pid, "error", err)
	}
	o.mu.Lock()
	w.exited = true
	o.mu.Unlock()
	// The leader is a zombie until Wait, so its group id is still ours.
	killGroup(w.pid)
	waitErr := w.cmd.Wait()
	select { // the output ends with the group; don't hang on an escaped child
	case <-w.out.done:
	case <-time.After(time.Second):
	}
	// Stopped by another instance sharing WorkersDir (a function deleted
	// through another engine): its marker, or the directory it removed.
	_, statErr := os.Stat(filepath.Join(w.dir, stoppedMarker))
	_, dirErr := os.Stat(w.dir)
	stoppedElsewhere := statErr == nil || errors.Is(dirErr, fs.ErrNotExist)
	// Before the directory: a cgroup without its directory is stale (see New).
	o.destroyCgroup(w.name, w.cg)
	if err := os.RemoveAll(w.dir); err != nil {
		o.log.Warn("could not remove worker directory", "worker", w.name, "dir", w.dir, "error", err)
	}

	o.mu.Lock()
	w.waitErr = waitErr
	if o.workers[w.name] == w {
		delete(o.workers, w.name)
	}
	p := o.pools[w.runtimeID]
	if p != nil {
		p.free = slices.DeleteFunc(p.free, func(x *worker) bool { return x == w })
	}
	killed, st, fnID, version := w.killed, w.state, w.fnID, w.version
	o.mu.Unlock()
	close(w.done)

	attrs := []any{"worker", w.name, "runtime_id", w.runtimeID, "function_id", fnID, "version", version, "status", waitErr}
	switch {
	case killed:
		o.log.Debug("worker stopped", attrs...)
	case stoppedElsewhere:
		o.log.Debug("worker stopped by another instance", attrs...)
	case exitCode(waitErr) == 3:
		// The runtime's way of retiring after a timed-out execution.
		o.log.Info("worker retired after an execution timeout", attrs...)
	case st == stateStarting:
		// waitReady reports it with the output.
	default:
		o.log.Warn("worker exited unexpectedly", append(attrs, "output", w.out.Tail())...)
	}
	if p != nil {
		o.refill(w.runtimeID)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// killLocked kills the worker's process group, unless the process has
// already exited (then its pid may be reused). o.mu must be held, which
// keeps reap from reaping between the check and the signal.
func (o *Orchestrator) killLocked(w *worker) {
	w.killed = true
	if !w.exited {
		killGroup(w.pid)
	}
}

// stop kills w and waits (bounded) until it is reaped and its directory removed.
func (o *Orchestrator) stop(ctx context.Context, w *worker) {
	o.mu.Lock()
	o.killLocked(w)
	o.mu.Unlock()
	waitDone(ctx, w)
}

func waitDone(ctx context.Context, w *worker) {
	t := time.NewTimer(deleteWait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// DeletePool stops every worker of the runtime, free or specialised. An
// unknown runtime is not an error.
func (o *Orchestrator) DeletePool(ctx context.Context, runtimeID string) error {
	o.mu.Lock()
	delete(o.pools, runtimeID)
	var victims []*worker
	for _, w := range o.workers {
		if w.runtimeID == runtimeID {
			o.killLocked(w)
			victims = append(victims, w)
		}
	}
	o.mu.Unlock()
	for _, w := range victims {
		waitDone(ctx, w)
	}
	if len(victims) > 0 {
		o.log.Info("pool deleted", "runtime_id", runtimeID, "workers", len(victims))
	}
	return ctx.Err()
}

// Pool reports the runtime's workers: Total counts free and specialised
// ones, Available the free ones.
func (o *Orchestrator) Pool(_ context.Context, runtimeID string) (orchestrator.Capacity, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pools[runtimeID]
	if p == nil {
		return orchestrator.Capacity{}, fmt.Errorf("pool %s: %w", runtimeID, orchestrator.ErrPoolNotFound)
	}
	c := orchestrator.Capacity{Available: len(p.free)}
	for _, w := range o.workers {
		if w.runtimeID == runtimeID && w.state != stateStarting && !w.killed && !w.exited {
			c.Total++
		}
	}
	return c, nil
}

// ScaleUp takes count free workers of fn's runtime (starting more if the pool
// has too few), unpacks fn's package into each, and returns them. The pool
// is refilled in the background. On error no worker is left specialised.
func (o *Orchestrator) ScaleUp(ctx context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	switch {
	case count <= 0:
		return nil, fmt.Errorf("scale up function %s: count %d must be positive", fn.ID, count)
	case !validFunctionID(fn.ID):
		return nil, fmt.Errorf("scale up function %q: not a valid function id", fn.ID)
	case fn.Package.Open == nil:
		return nil, fmt.Errorf("scale up function %s: no package to deliver", fn.ID)
	}
	start := time.Now()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, fmt.Errorf("scale up function %s: %w", fn.ID, errClosed)
	}
	p := o.pools[fn.RuntimeID]
	if p == nil {
		o.mu.Unlock()
		return nil, fmt.Errorf("scale up function %s: pool %s: %w", fn.ID, fn.RuntimeID, orchestrator.ErrPoolNotFound)
	}
	taken := min(count, len(p.free))
	ws := slices.Clone(p.free[len(p.free)-taken:])
	p.free = p.free[:len(p.free)-taken]
	for _, w := range ws {
		o.reserveLocked(w, fn)
	}
	o.mu.Unlock()
	defer o.refill(fn.RuntimeID)

	ws, err := o.startExtra(ctx, p, fn, ws, count-taken)
	if err == nil {
		err = o.deliver(ctx, fn, ws)
	}
	if err == nil {
		err = o.specialise(ws, fn)
	}
	if err != nil {
		for _, w := range ws {
			o.stop(context.WithoutCancel(ctx), w)
		}
		return nil, fmt.Errorf("scale up function %s version %d: %w", fn.ID, fn.Version, err)
	}
	// A strict worker starts at the runtime level. A function the plan
	// has at another level (busy on other workers already, or a static
	// policy) gets it before its first call here.
	if level := o.pre.level(preload.Key{Function: fn.ID, Version: fn.Version}, fn.RuntimeID); p.strict && level != preload.Runtime {
		for _, w := range ws {
			pctx, cancel := context.WithTimeout(ctx, preloadWait)
			o.applyLevel(pctx, w, level)
			cancel()
		}
	}
	out := make([]orchestrator.Worker, len(ws))
	for i, w := range ws {
		out[i] = w.public()
	}
	o.log.Debug("scaled up", "function_id", fn.ID, "version", fn.Version, "workers", count, "from_pool", taken, "elapsed", time.Since(start))
	return out, nil
}

// reserveLocked marks w as being specialised for fn; DeleteFunction already
// counts it as fn's.
func (o *Orchestrator) reserveLocked(w *worker, fn orchestrator.Function) {
	w.state = stateReserved
	w.fnID, w.version = fn.ID, fn.Version
	w.entry, w.timeout = fn.Entry, fn.Timeout
}

// startExtra starts n workers for a ScaleUp that the pool could not serve
// (a local machine can start processes on demand) and appends them to ws.
func (o *Orchestrator) startExtra(ctx context.Context, p *pool, fn orchestrator.Function, ws []*worker, n int) ([]*worker, error) {
	if n == 0 {
		return ws, nil
	}
	started := make([]*worker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { started[i], errs[i] = o.startWorker(ctx, p) })
	}
	wg.Wait()
	o.mu.Lock()
	for _, w := range started {
		if w != nil {
			o.reserveLocked(w, fn)
			ws = append(ws, w)
		}
	}
	o.mu.Unlock()
	return ws, errors.Join(errs...)
}

// deliver unpacks fn's package once into a temporary directory and links
// the tree into every worker's packages/<fn.ID>/: one extraction and no copy
// of the data however many workers there are. The shared inodes are safe:
// the files belong to the engine's user, sandboxed workers see them through
// a read-only mount as another user, and unsandboxed ones run as the
// engine's user anyway. All of fn's workers run the same code.
func (o *Orchestrator) deliver(ctx context.Context, fn orchestrator.Function, ws []*worker) error {
	rc, err := fn.Package.Open(ctx)
	if err != nil {
		return fmt.Errorf("open package: %w", err)
	}
	tmp, err := os.MkdirTemp(o.cfg.WorkersDir, extractPrefix)
	if err != nil {
		_ = rc.Close()
		return fmt.Errorf("deliver package: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "pkg")
	if f, ok := rc.(*os.File); ok {
		// Package storage on local disk hands out the file itself: read it
		// in place rather than spooling a copy.
		err = archive.Extract(f.Name(), src, o.cfg.Limits)
	} else {
		err = archive.ExtractReader(rc, tmp, src, o.cfg.Limits)
	}
	_ = rc.Close()
	if err != nil {
		return fmt.Errorf("deliver package: %w", err)
	}
	for i, w := range ws {
		dst := filepath.Join(w.dir, packagesName, fn.ID)
		if i == len(ws)-1 {
			err = os.Rename(src, dst) // the last one takes the tree itself
		} else {
			err = linkTree(src, dst)
		}
		if err != nil {
			return fmt.Errorf("deliver package to worker %s: %w", w.name, err)
		}
	}
	return nil
}

// linkTree recreates the directory tree src at dst with hard links to its files.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case d.Type().IsRegular():
			if err := os.Link(path, target); err != nil {
				return copyFile(path, target) // a file system without hard links
			}
			return nil
		}
		return fmt.Errorf("unexpected file type %s at %s", d.Type(), rel)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// specialise applies fn's limits to delivered workers and marks them as
// fn's, unless one was stopped meanwhile.
func (o *Orchestrator) specialise(ws []*worker, fn orchestrator.Function) error {
	for _, w := range ws {
		o.mu.Lock()
		change := w.limitChangesLocked(fn.CPU, fn.MemorySize)
		o.mu.Unlock()
		change.apply(w)
	}
	o.mu.Lock()
	for _, w := range ws {
		if w.killed || w.exited || w.fnID != fn.ID || w.version != fn.Version {
			o.mu.Unlock()
			return fmt.Errorf("worker %s: %w: stopped during scale-up", w.name, orchestrator.ErrWorkerNotFound)
		}
	}
	recs := make([]record, len(ws))
	for i, w := range ws {
		w.state = stateSpecialised
		recs[i] = w.record(o.cfg.Owner)
	}
	o.mu.Unlock()
	for i, w := range ws {
		if err := writeRecord(w.dir, recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// validFunctionID reports whether id is safe as a directory name.
func validFunctionID(id string) bool {
	return id != "" && id != "." && id != ".." && filepath.Base(id) == id && len(id) <= 255
}

// Run executes inv on w. A worker that does not answer within inv.Timeout
// plus RunGrace is killed, and the execution reported as timed out; one whose
// connection broke is killed and ErrWorkerLost returned, unless its cgroup
// says it was killed for its memory limit: that is the function's failure,
// reported as such. A failure after the function hit its pids or memory
// limit gets a message naming the limit, and the worker is replaced.
func (o *Orchestrator) Run(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) (orchestrator.Result, error) {
	o.mu.Lock()
	wk := o.workers[w.Name]
	if wk == nil || wk.state != stateSpecialised || wk.killed || wk.exited || wk.draining {
		o.mu.Unlock()
		return orchestrator.Result{}, fmt.Errorf("run %s on worker %s: %w", inv.ExecutionID, w.Name, orchestrator.ErrWorkerNotFound)
	}
	// The function's limits may have changed since it was specialised.
	change := wk.limitChangesLocked(inv.CPU, inv.MemorySize)
	strict, key, rt := wk.strict, preload.Key{Function: wk.fnID, Version: wk.version}, wk.runtimeID
	o.mu.Unlock()
	change.apply(wk)
	if strict {
		o.pre.record(rt, key)
	}

	start := time.Now()
	res, err := o.client.Execute(ctx, wk.addr, inv, o.cfg.RunGrace)
	switch {
	case err == nil:
		if !res.Success {
			if !wk.strict && wk.kind != KindNodeJS && string(res.Output) == timeoutOutput {
				// The Python runtime cannot stop the timed-out thread: it drains
				// and exits. Sending it another execution would race its exit.
				// (The Node.js runtime terminates the thread and carries on.)
				o.mu.Lock()
				wk.draining = true
				o.mu.Unlock()
			}
			res = o.explainFailure(wk, res)
		}
		return res, nil
	case errors.Is(err, workerclient.ErrWorkerStuck):
		o.log.Warn("killing stuck worker", "worker", wk.name, "execution_id", inv.ExecutionID, "timeout", inv.Timeout, "grace", o.cfg.RunGrace)
		o.kill(wk)
		if msg, hit := o.limitAfterDeath(wk); hit {
			// Stuck because of a limit (a fork bomb, or the kernel busy
			// OOM-killing its children): say which rather than "timeout".
			res.Output, res.Logs = jsonString(msg), res.Logs+msg+"\n"
		}
		return res, nil
	case errors.Is(err, orchestrator.ErrWorkerLost):
		// Whatever it still is, it cannot be trusted with another execution.
		o.kill(wk)
		if res, ok := o.lostToLimit(wk, start); ok {
			o.log.Info("worker killed for its memory limit", "worker", wk.name, "function_id", wk.fnID, "execution_id", inv.ExecutionID)
			return res, nil
		}
	}
	return res, fmt.Errorf("run on worker %s: %w", wk.name, err)
}

// kill kills w without waiting; reap cleans up.
func (o *Orchestrator) kill(w *worker) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.killLocked(w)
}

// DeleteWorker stops a worker, whether this instance or another one sharing
// WorkersDir started it. Unknown names are not an error.
func (o *Orchestrator) DeleteWorker(ctx context.Context, w orchestrator.Worker) error {
	o.mu.Lock()
	wk := o.workers[w.Name]
	if wk != nil {
		o.killLocked(wk)
	}
	o.mu.Unlock()
	if wk != nil {
		waitDone(ctx, wk)
		return ctx.Err()
	}
	if !workerName.MatchString(w.Name) {
		return nil
	}
	rec, err := readRecord(filepath.Join(o.cfg.WorkersDir, w.Name))
	if err != nil {
		return nil // gone, or not a worker
	}
	return o.stopForeign(ctx, []record{rec})
}

// DeleteFunction stops every worker specialised for (functionID, version),
// including those of other instances sharing WorkersDir, and refills pools.
func (o *Orchestrator) DeleteFunction(ctx context.Context, functionID string, version int) error {
	o.mu.Lock()
	var victims []*worker
	for _, w := range o.workers {
		if (w.state == stateReserved || w.state == stateSpecialised) && w.fnID == functionID && w.version == version {
			o.killLocked(w)
			victims = append(victims, w)
		}
	}
	o.mu.Unlock()
	for _, w := range victims {
		waitDone(ctx, w)
	}

	recs, err := scanRecords(o.cfg.WorkersDir)
	if err != nil {
		return fmt.Errorf("delete function %s version %d: %w", functionID, version, err)
	}
	o.mu.Lock()
	foreign := slices.DeleteFunc(recs, func(r record) bool {
		_, ours := o.workers[r.Name]
		return ours || r.Function != functionID || r.Version != version
	})
	o.mu.Unlock()
	if len(victims)+len(foreign) > 0 {
		o.log.Info("function workers deleted", "function_id", functionID, "version", version, "workers", len(victims), "other_instances", len(foreign))
	}
	return o.stopForeign(ctx, foreign)
}

// stopForeign kills workers started by another instance: after checking that
// the pid still runs the worker, it kills the process group, waits (bounded)
// for it to die and removes the directory. If the owning instance is alive,
// its reaper forgets the worker.
func (o *Orchestrator) stopForeign(ctx context.Context, recs []record) error {
	for _, rec := range recs {
		if rec.alive() {
			// Tells the owner's reaper the exit was asked for (it cannot
			// see our kill); best effort: a missing directory says the same.
			_ = os.WriteFile(filepath.Join(o.cfg.WorkersDir, rec.Name, stoppedMarker), nil, 0o600)
			killGroup(rec.PID)
		}
	}
	deadline := time.Now().Add(deleteWait)
	for _, rec := range recs {
		for rec.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if o.conf.cgroups != nil {
			if err := o.conf.cgroups.Remove(rec.Name); err != nil {
				o.log.Warn("could not remove worker cgroup", "worker", rec.Name, "error", err)
			}
		}
		dir, gone := filepath.Join(o.cfg.WorkersDir, rec.Name), filepath.Join(o.cfg.WorkersDir, deletePrefix+rec.Name)
		if err := os.Rename(dir, gone); err != nil {
			if errors.Is(err, fs.ErrNotExist) { // its owner removed it already
				continue
			}
			return fmt.Errorf("delete worker %s: %w", rec.Name, err)
		}
		if err := os.RemoveAll(gone); err != nil {
			return fmt.Errorf("delete worker %s: %w", rec.Name, err)
		}
	}
	return ctx.Err()
}

// Close stops every worker and waits for all background work.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	for _, w := range o.workers {
		o.killLocked(w)
	}
	o.pools = map[string]*pool{}
	o.mu.Unlock()
	o.end()
	o.wg.Wait()
	o.client.Close()
	if o.conf.cgroups != nil {
		o.conf.cgroups.Close()
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
