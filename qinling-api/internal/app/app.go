// Package app is qinling-api's startup: flags, configuration, wiring of the
// API (and, with --all-in-one, the engine) and graceful shutdown.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rs/cors"

	"github.com/qinling-go/qinling/pkg/backends"
	"github.com/qinling-go/qinling/pkg/cmdline"
	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/jobs"
	"github.com/qinling-go/qinling/pkg/keystone"
	"github.com/qinling-go/qinling/pkg/service"
	"github.com/qinling-go/qinling/qinling-api/internal/api"
)

// Main runs qinling-api and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "db-sync" {
		return dbSync(ctx, args[1:], stdout, stderr)
	}
	flags := cmdline.New("qinling-api", []string{
		"qinling-api [--all-in-one] [--config-file FILE]...",
		"qinling-api db-sync [--config-file FILE]...",
		"qinling-api --version",
	}, []cmdline.Option{
		cmdline.StatePath, cmdline.APIAddress, cmdline.AuthEnable, cmdline.EngineOrchestrator,
		cmdline.Sandbox, cmdline.TransportURL, cmdline.DatabaseConnection, cmdline.EtcdEmbedded, cmdline.Debug,
	})
	allInOne := flags.Bool("all-in-one", false, "run the engine in this process too, with no outside service: SQLite, embedded etcd, in-process RPC, local orchestrator; auth is off unless a config file sets [pecan] auth_enable")
	if code, exit := flags.Parse(args, stdout, stderr); exit {
		return code
	}
	var overrides []config.Override
	if *allInOne {
		overrides = append(overrides, func(c *config.Config) {
			if !c.IsSet("pecan.auth_enable") {
				c.Pecan.AuthEnable = false
			}
		})
	}
	cfg, err := config.Load(flags.ConfigFiles, overrides...)
	if err != nil {
		fmt.Fprintf(stderr, "qinling-api: configuration: %v\n", err)
		return 2
	}
	log := service.NewLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	log.Debug("configuration", "config", cfg)
	if err := run(ctx, cfg, *allInOne, log); err != nil {
		log.Error("qinling-api stopped", "error", err)
		return 1
	}
	return 0
}

// dbSync creates or upgrades the database schema (upstream's
// qinling-db-manage upgrade head).
func dbSync(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := cmdline.New("qinling-api db-sync", []string{"qinling-api db-sync [--config-file FILE]..."}, []cmdline.Option{
		cmdline.StatePath, cmdline.DatabaseConnection,
	})
	if code, exit := flags.Parse(args, stdout, stderr); exit {
		return code
	}
	cfg, err := config.Load(flags.ConfigFiles)
	if err != nil {
		fmt.Fprintf(stderr, "qinling-api db-sync: configuration: %v\n", err)
		return 2
	}
	driver, dsn, err := config.ParseDatabaseURL(cfg.DatabaseURL())
	if err == nil && driver == "sqlite" {
		err = os.MkdirAll(cfg.Default.StatePath, 0o700)
	}
	if err != nil {
		fmt.Fprintf(stderr, "qinling-api db-sync: %v\n", err)
		return 1
	}
	d, err := db.Open(driver, dsn, db.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "qinling-api db-sync: %v\n", err)
		return 1
	}
	defer d.Close()
	from, to, err := d.Sync(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "qinling-api db-sync: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "database schema at version %d (was %d)\n", to, from)
	return 0
}

func run(ctx context.Context, cfg *config.Config, allInOne bool, log *slog.Logger) error {
	auth, err := authenticator(cfg, log)
	if err != nil {
		return err
	}
	// Listen first: a port in use should fail before anything else starts.
	addr := net.JoinHostPort(cfg.API.Host, strconv.Itoa(cfg.API.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	defer ln.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deps, err := service.Open(ctx, cfg, allInOne, log)
	if err != nil {
		return err
	}
	defer deps.Close()
	var eng *service.Engine
	if allInOne {
		if eng, err = service.StartEngine(ctx, cfg, deps, true, log); err != nil {
			return err
		}
	}
	l := cfg.ResourceLimits
	client := engine.Client{RPC: deps.Transport}
	if backends.EngineLocalWorkers(cfg) {
		client.Owners, client.Metrics = deps.Coord, deps.Metrics
	}
	executions := &execution.Starter{DB: deps.DB, Engine: client, Log: log.With("component", "api"),
		MaxPerFunction: cfg.Engine.MaxPendingPerFunction, MaxPerProject: cfg.Engine.MaxPendingPerProject, Metrics: deps.Metrics}
	srv := &api.Server{
		DB: deps.DB, Engine: client, Executions: executions, Coord: deps.Coord, Storage: deps.Storage, Swift: deps.Swift,
		Auth: auth, Endpoint: cfg.PublicEndpoint(), Log: log.With("component", "api"),
		ImageFunctions: backends.ImageFunctions(cfg),
		Limits: api.Limits{
			MaxBodySize: cfg.API.MaxBodySize, MaxPackageSize: cfg.Storage.MaxPackageSize,
			DefaultCPU: l.DefaultCPU, MinCPU: l.MinCPU, MaxCPU: l.MaxCPU,
			DefaultMemory: l.DefaultMemory, MinMemory: l.MinMemory, MaxMemory: l.MaxMemory,
			DefaultTimeout: l.DefaultTimeout, MinTimeout: l.MinTimeout, MaxTimeout: l.MaxTimeout,
			DefaultPageSize: cfg.API.DefaultPageSize, MaxPageSize: cfg.API.MaxPageSize,
			MinWorkers: cfg.Engine.MinWorkersPerFunction, MaxWorkers: cfg.Engine.MaxWorkersPerFunction,
		},
	}
	if cfg.Metrics.APIEnabled {
		srv.Metrics = deps.Metrics
		deps.Metrics.WatchUsage(deps.ReadUsage)
	}
	if cfg.API.EnableJobHandler {
		// Every API process may run it: each job run is claimed in the
		// database, so it fires once however many handlers there are.
		h := &jobs.Handler{DB: deps.DB, Executions: executions, Log: log.With("component", "jobs")}
		go h.Run(ctx, jobs.Interval)
	}
	hs := newHTTPServer(cfg, withCORS(cfg.CORS, withMetrics(cfg.Metrics, srv.Metrics, srv.Handler())))
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	cmdline.LogStarted(log, "qinling-api", cfg, "address", "http://"+ln.Addr().String(),
		"all_in_one", allInOne, "auth", cmdline.OnOff(cfg.Pecan.AuthEnable), "metrics", cmdline.OnOff(cfg.Metrics.APIEnabled))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("api serve: %w", err)
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	cancel()
	if eng != nil {
		if err := eng.Wait(); err != nil {
			log.Warn("engine shutdown", "error", err)
		}
	}
	return nil
}

// authenticator is the API's authentication as configured: Keystone token
// validation when [pecan] auth_enable is true, upstream's no-auth mode
// (everyone is project "default" and admin, no policy) otherwise.
func authenticator(cfg *config.Config, log *slog.Logger) (api.Authenticator, error) {
	if !cfg.Pecan.AuthEnable {
		log.Warn("authentication is off ([pecan] auth_enable = false): every caller is project \"default\" and admin")
		return api.NoAuth{}, nil
	}
	v, err := keystone.New(cfg.Keystone, keystone.WithLogger(log.With("component", "keystone")))
	if err != nil {
		return nil, err
	}
	log.Info("authentication is on: Keystone tokens", "validate_at", v.Endpoint(),
		"token_cache_size", cfg.Keystone.TokenCacheSize, "token_cache_time", cfg.Keystone.TokenCacheTime)
	return v, nil
}

// withCORS answers cross-site requests per [cors], as oslo.middleware's CORS
// did in front of upstream's API: preflight requests are answered before
// authentication; with no allowed origin the handler is unchanged.
func withCORS(c config.CORS, h http.Handler) http.Handler {
	if len(c.AllowedOrigin) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins:   c.AllowedOrigin,
		AllowedMethods:   c.AllowMethods,
		AllowedHeaders:   c.AllowHeaders,
		ExposedHeaders:   c.ExposeHeaders,
		AllowCredentials: c.AllowCredentials,
		MaxAge:           c.MaxAge,
	}).Handler(h)
}
