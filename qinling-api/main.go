// Command qinling-api serves Qinling's v1 REST API; with --all-in-one it runs
// the engine in the same process and needs no outside service.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/qinling-go/qinling/qinling-api/internal/app"
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
