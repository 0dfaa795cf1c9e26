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
// once specialised. An execution that hits a limit fails with upstream's
// resource message, the limit named in its log, and the worker is replaced
// (limits.go). Each runtime has a pool of
// free, prewarmed workers; ScaleUp takes some, gives them the function's
// package in their packages/ directory (links to the one unpacked copy of
// that function version, pkgcache.go) and hands them out, then tops the pool up in
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
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// Orchestrator is the local orchestrator. Create it with New.
type Orchestrator struct {
	cfg    Config
	log    *slog.Logger
	client *workerclient.Client
	spawn  *spawner
	conf   *confinement
	pkgs   *packageCache
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
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
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
	pkgs, err := newPackageCache(dir, cfg.PackageCacheSize, cfg.PackageCacheProjectShare, cfg.Limits, log)
	if err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
	}
	life, end := context.WithCancel(context.Background())
	o := &Orchestrator{
		cfg: cfg,
		log: log,
		client: workerclient.New(workerclient.Options{
			MaxResultBytes: cfg.MaxResultSize,
			MaxLogBytes:    cfg.MaxLogSize,
		}),
		spawn:   newSpawner(life),
		conf:    conf,
		pkgs:    pkgs,
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
	o.pkgs.close()
	if o.conf.cgroups != nil {
		o.conf.cgroups.Close()
	}
	return nil
}

var errClosed = errors.New("local orchestrator: closed")

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
