package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// Isolation says how executions on one worker are kept apart.
//
// Without strict isolation a worker runs every execution in its own process
// (upstream's warm reuse): module globals, files in /tmp and processes an
// execution leaves behind are seen by the next one. With it, the runtime
// runs each execution in a fresh process forked from a zygote, prepared
// before the call arrives and killed, with everything it started, once it
// has answered (runtimes/python3/README.md, docs/isolation.md). A strict
// worker's limits still come from its cgroup; a timeout kills only the
// execution's processes, and the worker stays.
type Isolation struct {
	// Strict gives every runtime strict isolation.
	Strict bool
	// StrictRuntimes are runtime IDs or images whose workers use strict
	// isolation even when Strict is false.
	StrictRuntimes []string
	// Spares is how many execution processes a strict worker keeps ready
	// for the next calls; 0 forks one when a call arrives.
	Spares int
	// Preload decides what strict Python workers import before calls arrive.
	Preload Preload
}

// Preload configures the preloading plan of strict Python workers (package preload).
type Preload struct {
	// Policy plans from recent traffic (default preload.Traffic).
	Policy preload.Policy
	// Slots bounds the function versions with function zygotes (0: none;
	// [engine] preload_slots sets it).
	Slots int
	// Window is how far back calls are counted (default 60 s); Interval is
	// how often the plan is refreshed (default 5 s).
	Window, Interval time.Duration
}

const (
	preloadBuckets = 12
	// preloadWait bounds a /preload call; an import that takes longer is
	// abandoned by the worker first (it is given the function's timeout).
	preloadWait = 35 * time.Second
)

// strictKinds are the runtime kinds whose server implements strict isolation.
var strictKinds = map[string]bool{KindPython3: true, KindNodeJS: true}

// strict reports whether rt's workers use strict isolation.
func (o *Orchestrator) strict(rt orchestrator.Runtime) bool {
	if o.cfg.Isolation.Strict {
		return true
	}
	for _, r := range o.cfg.Isolation.StrictRuntimes {
		if r != "" && (r == rt.ID || r == rt.Image) {
			return true
		}
	}
	return false
}

// checkIsolation fails for a strict runtime whose kind cannot do it: running
// it with warm reuse instead would silently break the promise.
func (o *Orchestrator) checkIsolation(rt orchestrator.Runtime, kind string) error {
	if o.strict(rt) && !strictKinds[kind] {
		return fmt.Errorf("%w: runtime kind %s does not support strict isolation; "+
			"set [engine] isolation = reuse or leave the runtime out of [local_orchestrator] strict_runtimes",
			orchestrator.ErrImageNotRunnable, kind)
	}
	return nil
}

// strictArgs are the runtime's command-line arguments for strict isolation;
// cpuProcs is the cgroup.procs file execution processes join, if any.
func (o *Orchestrator) strictArgs(cpuProcs string) []string {
	args := []string{"--isolation", "strict", "--spares", strconv.Itoa(o.cfg.Isolation.Spares),
		"--tmp-size", strconv.FormatInt(o.conf.cfg.TmpSize, 10)}
	if cpuProcs != "" {
		args = append(args, "--cpu-cgroup", cpuProcs)
	}
	return args
}

// execCgroup names the child cpu group of a strict worker's executions.
const execCgroup = "exec"

// splitCPU gives a strict worker's execution processes a cpu group of their
// own below the worker's, where the function's cpu limit applies (they join
// it once prepared, before they get a request): the function's cpu is then
// what its executions use, and preparing them (forking, confining, warming
// up) is the worker's own overhead, which a small quota would otherwise
// turn into throttled calls. Memory and pids limits stay on the worker's
// group, over everything. Where that cannot be done (cgroup v2, where a
// group with processes cannot have controller children) the limit stays
// on the whole worker, which is logged once. The child's cgroup.procs
// belongs to uid and gid, the worker's on the host. Returns the child's
// host directory, or "".
func (o *Orchestrator) splitCPU(p *pool, cg *cgroup.Group, uid, gid int) string {
	if !p.strict || cg == nil {
		return ""
	}
	dir, err := cg.SplitCPU(execCgroup, uid, gid)
	if err != nil {
		o.conf.splitOnce.Do(func() {
			o.log.Info("strict isolation: the cpu limit covers the whole worker, preparing executions included", "reason", err)
		})
		return ""
	}
	return dir
}

// preloader keeps the preloading plan: it counts the calls of strict
// Python workers (worker.preloads), refreshes the plan every Interval (or
// at once when a function that could take a free slot gets busy) and tells
// workers whose level changed.
type preloader struct {
	o       *Orchestrator
	policy  preload.Policy
	slots   int
	counter *preload.Counter
	refresh chan struct{}

	mu       sync.Mutex
	plan     preload.Plan
	asked    map[preload.Key]bool // refresh requested since the last plan
	applying map[string]bool      // workers with a /preload in flight
}

func newPreloader(o *Orchestrator) *preloader {
	p := o.cfg.Isolation.Preload
	return &preloader{
		o: o, policy: p.Policy, slots: p.Slots,
		counter: preload.NewCounter(p.Window, preloadBuckets),
		refresh: make(chan struct{}, 1),
		asked:   map[preload.Key]bool{}, applying: map[string]bool{},
	}
}

// run refreshes the plan until the orchestrator closes.
func (p *preloader) run() {
	defer p.o.wg.Done()
	t := time.NewTicker(p.o.cfg.Isolation.Preload.Interval)
	defer t.Stop()
	for {
		select {
		case <-p.o.life.Done():
			return
		case <-t.C:
		case <-p.refresh:
		}
		p.update(time.Now())
	}
}

// record counts one call on a preloading worker and asks for a refresh if the
// function is not preloaded while slots are free.
func (p *preloader) record(rt string, k preload.Key) {
	n := p.counter.Add(time.Now(), rt, k)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < preload.DefaultMinCalls || p.asked[k] || p.plan.Level(k, rt) == preload.Function ||
		p.plan.FunctionSlots() >= p.slots {
		return
	}
	p.asked[k] = true
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// level is the level planned for a function version.
func (p *preloader) level(k preload.Key, rt string) preload.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plan.Level(k, rt)
}

// update makes a new plan and applies it to every preloading worker.
func (p *preloader) update(now time.Time) {
	plan := preload.NewPlan(p.policy.Plan(p.counter.Stats(now), p.slots), p.slots)
	p.mu.Lock()
	p.plan = plan
	p.asked = map[preload.Key]bool{}
	p.mu.Unlock()

	o := p.o
	o.mu.Lock()
	var todo []*worker
	for _, w := range o.workers {
		if w.preloads() && w.state == stateSpecialised && !w.killed && !w.exited &&
			plan.Level(preload.Key{Function: w.fnID, Version: w.version}, w.runtimeID) != w.level {
			todo = append(todo, w)
		}
	}
	o.mu.Unlock()
	for _, w := range todo {
		p.mu.Lock()
		busy := p.applying[w.name]
		p.applying[w.name] = true
		p.mu.Unlock()
		if busy || !o.hold() {
			continue
		}
		go func() {
			defer o.wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.applying, w.name)
				p.mu.Unlock()
			}()
			ctx, cancel := context.WithTimeout(o.life, preloadWait)
			defer cancel()
			o.applyLevel(ctx, w, plan.Level(preload.Key{Function: w.fnID, Version: w.version}, w.runtimeID))
		}()
	}
}

// applyLevel asks strict worker w for level and records it as w's, even if
// the worker settled lower (its function's modules could not be imported
// in advance: that is logged, and not retried until the plan changes).
func (o *Orchestrator) applyLevel(ctx context.Context, w *worker, level preload.Level) {
	o.mu.Lock()
	req := workerclient.Preload{
		Level: level.String(), FunctionID: w.fnID, FunctionVersion: w.version,
		Entry: w.entry, Timeout: w.timeout.Seconds(),
	}
	o.mu.Unlock()
	if req.Timeout <= 0 {
		req.Timeout = 30
	}
	start := time.Now()
	res, err := o.client.Preload(ctx, w.addr, req)
	if err != nil {
		lvl := slog.LevelWarn
		if errors.Is(err, orchestrator.ErrWorkerNotFound) {
			lvl = slog.LevelDebug // stopped meanwhile
		}
		o.log.Log(ctx, lvl, "could not change a worker's preloading", "worker", w.name, "level", level, "error", err)
		return
	}
	o.mu.Lock()
	w.level = level
	o.mu.Unlock()
	attrs := []any{"worker", w.name, "function_id", w.fnID, "version", w.version, "level", level, "in_force", res.Level, "elapsed", time.Since(start)}
	if res.Error != "" {
		o.log.Info("function not preloaded; its modules are imported in each execution", append(attrs, "reason", res.Error)...)
		return
	}
	o.log.Debug("worker preloading changed", attrs...)
}
