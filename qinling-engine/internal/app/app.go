// Package app is qinling-engine's startup: flags, configuration, wiring and
// graceful shutdown.
package app

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/qinling-go/qinling/pkg/cmdline"
	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/service"
)

// Main runs qinling-engine and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := cmdline.New("qinling-engine", []string{
		"qinling-engine [--config-file FILE]...",
		"qinling-engine --version",
	}, []cmdline.Option{
		cmdline.StatePath, cmdline.TransportURL, cmdline.DatabaseConnection, cmdline.EtcdEmbedded,
		cmdline.EngineOrchestrator, cmdline.Sandbox, cmdline.Debug,
	})
	if code, exit := flags.Parse(args, stdout, stderr); exit {
		return code
	}
	cfg, err := config.Load(flags.ConfigFiles)
	if err != nil {
		fmt.Fprintf(stderr, "qinling-engine: configuration: %v\n", err)
		return 2
	}
	log := service.NewLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	log.Debug("configuration", "config", cfg)
	// Listen first: a port in use should fail before anything else starts.
	var metricsLn net.Listener
	if addr := cfg.Metrics.EngineAddress; addr != "" {
		if metricsLn, err = net.Listen("tcp", addr); err != nil {
			log.Error("qinling-engine stopped", "error", fmt.Errorf("metrics.engine_address: %w", err))
			return 1
		}
		defer metricsLn.Close()
	}
	deps, err := service.Open(ctx, cfg, false, log)
	if err != nil {
		log.Error("qinling-engine stopped", "error", err)
		return 1
	}
	defer deps.Close()
	eng, err := service.StartEngine(ctx, cfg, deps, false, log)
	if err != nil {
		log.Error("qinling-engine stopped", "error", err)
		return 1
	}
	metricsAddress := "off"
	if metricsLn != nil {
		metricsAddress = "http://" + metricsLn.Addr().String() + "/metrics"
		go func() {
			if err := deps.Metrics.Serve(ctx, metricsLn, cfg.Metrics.BearerToken); err != nil {
				log.Error("metrics listener stopped", "error", err)
			}
		}()
	}
	cmdline.LogStarted(log, "qinling-engine", cfg, "name", cfg.EngineName(), "metrics", metricsAddress)
	if err := eng.Wait(); err != nil {
		log.Error("qinling-engine stopped", "error", err)
		return 1
	}
	return 0
}
