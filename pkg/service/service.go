// Package service assembles the running parts both binaries share: logging,
// the database, coordination, storage, the RPC transport and the engine. The
// all-in-one is qinling-api with the engine assembled into the same process.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/backends"
	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// NewLogger returns the process logger per [DEFAULT] debug and log_format.
func NewLogger(c *config.Config, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.Default.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var l *slog.Logger
	if c.Default.LogFormat == "json" {
		l = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		l = slog.New(slog.NewTextHandler(w, opts))
	}
	// Libraries that log on the default logger (a recovered RPC panic)
	// then follow [DEFAULT] log_format too.
	slog.SetDefault(l)
	return l
}

// Deps are the connections a process holds; Close releases them in reverse.
type Deps struct {
	// Metrics is the process's one registry (pkg/metrics): the all-in-one's
	// API and engine share it.
	Metrics *metrics.Metrics
	DB      *db.DB
	Coord   coord.Coordinator
	Storage storage.PackageStorage
	// Swift reaches swift functions' objects; nil with auth off.
	Swift     swiftcode.Source
	Transport rpc.Transport
	closers   []func()
}

// Close releases everything Open acquired.
func (d *Deps) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// Open connects to everything a process needs. The state directory is
// created first: the all-in-one keeps everything under it.
func Open(ctx context.Context, c *config.Config, allInOne bool, log *slog.Logger) (_ *Deps, err error) {
	d := &Deps{Metrics: metrics.New()}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if c.Etcd.Embedded && !allInOne {
		// Each process would start its own etcd and none would see the
		// others' workers or locks.
		return nil, fmt.Errorf("etcd.embedded = true only works with --all-in-one: set it to false and point [etcd] host and port at the etcd cluster")
	}
	if err := os.MkdirAll(c.Default.StatePath, 0o700); err != nil {
		return nil, fmt.Errorf("DEFAULT.state_path: %w", err)
	}
	driver, dsn, err := config.ParseDatabaseURL(c.DatabaseURL())
	if err != nil {
		return nil, err
	}
	if d.DB, err = db.Open(driver, dsn, db.Options{MaxOpenConns: c.Database.MaxPoolSize}); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.DB.Close() })
	// A private SQLite database is ours to migrate; a shared MySQL one is
	// migrated by the operator's db-sync, and a mismatch must stop us.
	if driver == "sqlite" {
		if _, _, err := d.DB.Sync(ctx); err != nil {
			return nil, err
		}
	} else if err := d.DB.CheckSchema(ctx); err != nil {
		return nil, err
	}
	if err := startNotifier(c, d, log); err != nil {
		return nil, err
	}
	co, stop, err := backends.NewCoordinator(ctx, c)
	if err != nil {
		return nil, err
	}
	d.Coord = co
	d.closers = append(d.closers, stop)
	if d.Storage, err = backends.NewStorage(ctx, c); err != nil {
		return nil, err
	}
	if d.Swift, err = backends.NewSwiftCode(c); err != nil {
		return nil, err
	}
	if d.Transport, err = backends.NewTransport(c, allInOne, log); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.Transport.Close() })
	return d, nil
}

// startNotifier makes changes queue notifications and sends them, when
// [oslo_messaging_notifications] driver says so, until d is closed. Every
// process sends: the outbox's claims keep them from sending a message twice.
func startNotifier(c *config.Config, d *Deps, log *slog.Logger) error {
	sender, err := backends.NewNotifier(c, d.DB, log)
	if err != nil || sender == nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	d.DB.EnableNotifications("qinling." + host)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sender.Run(ctx)
	}()
	d.closers = append(d.closers, func() {
		cancel()
		<-done
	})
	return nil
}

// Engine is a running engine.
type Engine struct {
	Engine *engine.Engine
	orch   orchestrator.Orchestrator
	done   chan error
}

// StartEngine builds the orchestrator and the engine and starts serving RPC
// until ctx ends; Wait returns when it has stopped, after draining the
// running executions ([engine] shutdown_grace_period). In the all-in-one it
// sends again the asynchronous executions the previous run had not started.
func StartEngine(ctx context.Context, c *config.Config, d *Deps, allInOne bool, log *slog.Logger) (*Engine, error) {
	orch, err := backends.NewOrchestrator(c, log)
	if err != nil {
		return nil, err
	}
	eng := engine.New(d.DB, orch, d.Coord, d.Storage, engine.Options{
		Name:                c.EngineName(),
		FunctionConcurrency: c.Engine.FunctionConcurrency,
		MaxWorkers:          c.Engine.MaxWorkersPerFunction,
		Expiration:          c.Engine.FunctionServiceExpiration,
		ExpirationInterval:  c.Engine.ExpirationCheckInterval,
		PublicEndpoint:      c.PublicEndpoint(),
		// Twice the lease TTL and then some: a dead engine's lock is freed by
		// its lease, and the waiting executions must still be there to run.
		LockWait:         2*c.Etcd.LockTTL + 10*time.Second,
		RecoveryInterval: c.Engine.RecoveryInterval,
		Scaling: engine.ScalingOptions{
			Policy:          c.Engine.ScalingPolicy,
			MinWorkers:      c.Engine.MinWorkersPerFunction,
			TargetPerWorker: c.Engine.ScaleTargetPerWorker,
			BurstAfter:      c.Engine.ScaleBurstAfter,
			Interval:        c.Engine.ScaleInterval,
			DownWindow:      c.Engine.ScaleDownWindow,
			DownStep:        c.Engine.ScaleDownStep,
		},
		Metrics: d.Metrics,
		Swift:   d.Swift,
	}, log.With("component", "engine"))
	d.Metrics.WatchWorkers(eng.Workers)
	if err := eng.Start(ctx, allInOne); err != nil {
		orch.Close()
		return nil, err
	}
	e := &Engine{Engine: eng, orch: orch, done: make(chan error, 1)}
	go func() {
		served := make(chan error, 1)
		go func() { served <- serveEngine(ctx, d.Transport, c.EngineName(), eng) }()
		var err error
		select {
		case <-ctx.Done():
			log.Info("engine stopping: no more requests taken", "grace_period", c.Engine.ShutdownGracePeriod)
			// The transport takes no more requests; the running executions
			// get the grace period, then end with the reason. Workers are
			// stopped only after that.
			eng.Drain(c.Engine.ShutdownGracePeriod)
			err = <-served
		case err = <-served:
		}
		e.done <- errors.Join(err, orch.Close())
	}()
	if allInOne {
		go eng.Replay(ctx, engine.Client{RPC: d.Transport})
	}
	return e, nil
}

// serveEngine consumes the shared queue and, where the transport routes to
// one engine (rpc.EngineQueues), the engine's own, until both stopped.
func serveEngine(ctx context.Context, t rpc.Transport, name string, eng *engine.Engine) error {
	q, ok := t.(rpc.EngineQueues)
	if !ok {
		return t.Serve(ctx, eng)
	}
	own := make(chan error, 1)
	go func() { own <- q.ServeEngine(ctx, name, eng) }()
	return errors.Join(t.Serve(ctx, eng), <-own)
}

// Wait blocks until the engine stopped serving and its workers are gone.
func (e *Engine) Wait() error { return <-e.done }

// ReadUsage reads the usage rollup's totals for the usage counters
// (metrics.WatchUsage).
func (d *Deps) ReadUsage(ctx context.Context) ([]metrics.UsageTotal, error) {
	rows, err := d.DB.UsageSinceEver(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.UsageTotal, len(rows))
	for i, r := range rows {
		out[i] = metrics.UsageTotal{
			ProjectID: r.ProjectID, FunctionID: r.FunctionID,
			Succeeded: r.Succeeded, Failed: r.Failed,
			Duration: time.Duration(r.DurationMS) * time.Millisecond,
			CPU:      time.Duration(r.CPUMS) * time.Millisecond,
			// KiB × ms to byte-seconds.
			MemoryByteSeconds: float64(r.MemoryKiBMS) * 1024 / 1000,
		}
	}
	return out, nil
}
