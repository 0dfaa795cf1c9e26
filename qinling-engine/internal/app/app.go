// Package app is qinling-engine's startup: flags, configuration, wiring and
// graceful shutdown.
package app

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/service"
)

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Main runs qinling-engine and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qinling-engine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files stringList
	fs.Var(&files, "config-file", "oslo-style INI config file; repeatable, later files override earlier ones")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(files)
	if err != nil {
		fmt.Fprintf(stderr, "qinling-engine: configuration: %v\n", err)
		return 2
	}
	log := service.NewLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	log.Info("starting qinling-engine", "name", cfg.EngineName(), "config", cfg)
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
	if err := eng.Wait(); err != nil {
		log.Error("qinling-engine stopped", "error", err)
		return 1
	}
	return 0
}
