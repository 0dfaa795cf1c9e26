package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// Names inside a worker directory.
const (
	socketName   = "sock"
	packagesName = "packages"
)

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
	pkgKey  string        // the unpacked package it uses (pkgcache.go), once delivered
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

// preloads reports whether w has a preload level: that of a strict Python
// worker's zygote. A strict Node.js worker has no zygote (each execution
// is a fresh Node.js process started through the confine helper,
// docs/isolation.md, "Node.js") and its server no /preload.
func (w *worker) preloads() bool { return w.strict && w.kind == KindPython3 }

func (w *worker) public() orchestrator.Worker {
	return orchestrator.Worker{Name: w.name, Address: w.addr}
}

func (w *worker) record(owner string) record {
	return record{
		Name: w.name, Runtime: w.runtimeID, Kind: w.kind, Function: w.fnID, Version: w.version,
		PID: w.pid, Owner: owner, Socket: w.sock, Arg: w.arg, Started: w.started,
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
		_ = l.lis.Close()
		o.destroyCgroup(name, cg)
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start worker %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = wr, wr
	err = o.spawn.start(ctx, o.life, cmd)
	_ = wr.Close()
	_ = l.lis.Close() // the worker's now
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

// How often waitReady asks a starting worker, and how long stopping one
// waits for it to be reaped.
const (
	readyPollInterval = 3 * time.Millisecond
	deleteWait        = 5 * time.Second
)

// waitReady pings the worker until it answers, exits, or StartTimeout
// passes. Its socket exists (the engine's) and accepts from the start, so
// a ping waits in its backlog until the runtime serves: one ping, bounded
// by the start's deadline, rather than one a second left behind unread.
func (o *Orchestrator) waitReady(ctx context.Context, w *worker) error {
	deadline := time.NewTimer(o.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	// The ping ends with the worker (its socket goes with it, which resets
	// the connection) or with the orchestrator, whose Close waits for this.
	pctx, cancel := context.WithTimeout(ctx, o.cfg.StartTimeout)
	defer cancel()
	defer context.AfterFunc(o.life, cancel)()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-pctx.Done():
		}
	}()
	for {
		err := o.client.Ping(pctx, w.addr)
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
	killed, st, fnID, version, pkgKey := w.killed, w.state, w.fnID, w.version, w.pkgKey
	o.mu.Unlock()
	if pkgKey != "" {
		o.pkgs.release(pkgKey)
	}
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

// kill kills w without waiting; reap cleans up.
func (o *Orchestrator) kill(w *worker) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.killLocked(w)
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
