// Command qinling-engine runs functions for qinling-api: it consumes RPC
// requests, manages workers through the orchestrator and stores results.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/qinling-go/qinling/qinling-engine/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A second signal stops at once, without waiting for the drain.
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
