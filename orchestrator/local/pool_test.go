package local

import (
	"context"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
)

// TestLocal_RefillRacingDeleteIsNoWarning: a runtime deleted while its pool
// refills kills the worker being started, which then "exits before it was
// ready (signal: killed)". That is the delete working, not something for
// the operator to look into: no warning.
func TestLocal_RefillRacingDeleteIsNoWarning(t *testing.T) {
	t.Parallel()
	log, logged := recordingLogger(t)
	// The first worker serves; every later one (the refill's) never gets
	// ready, so only DeletePool ends its start.
	var started atomic.Int32
	serve, never := fakeCommand(modeServe, ""), fakeCommand(modeNeverReady, "")
	e := newFake(t, modeServe, func(c *Config) {
		c.Logger, c.StartTimeout = log, time.Hour
		c.Command = func(kind, sock, pkgDir string) *exec.Cmd {
			if started.Add(1) == 1 {
				return serve(kind, sock, pkgDir)
			}
			return never(kind, sock, pkgDir)
		}
	})
	e.pool(t)
	_, err := e.o.ScaleUp(context.Background(), e.function(t, "fn-refill", entryEcho), 1)
	require.NoError(t, err)
	eventually(t, "the refill's worker to be started", func() bool {
		e.o.mu.Lock()
		defer e.o.mu.Unlock()
		return len(e.o.workers) == 2
	})

	require.NoError(t, e.o.DeletePool(context.Background(), e.rt))
	eventually(t, "the refill to end", func() bool {
		return strings.Contains(logged(), "pool refill stopped: the pool was deleted")
	})
	for _, line := range strings.Split(logged(), "\n") {
		require.NotContains(t, line, "level=WARN", "nothing the operator needs to see")
	}
	_, err = e.o.Pool(context.Background(), e.rt)
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
}
