// Package coordtest is the conformance suite every coord backend passes.
package coordtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/coord"
)

// Run runs the suite; newCoord returns a fresh, empty coordinator.
func Run(t *testing.T, newCoord func(t *testing.T) coord.Coordinator) {
	ctx := context.Background()
	fv1 := coord.FunctionVersion{FunctionID: "f1", Version: 1}
	fv10 := coord.FunctionVersion{FunctionID: "f1", Version: 10}

	t.Run("workers are listed oldest first", func(t *testing.T) {
		c := newCoord(t)
		for _, n := range []string{"w-b", "w-a", "w-c"} {
			require.NoError(t, c.AddWorker(ctx, fv1, coord.WorkerRecord{Name: n, Address: "unix:///" + n}))
		}
		ws, err := c.Workers(ctx, fv1)
		require.NoError(t, err)
		require.Equal(t, []string{"w-b", "w-a", "w-c"}, names(ws))
		require.Equal(t, "unix:///w-a", ws[1].Address)
	})

	t.Run("version 1 and version 10 are separate", func(t *testing.T) {
		c := newCoord(t)
		require.NoError(t, c.AddWorker(ctx, fv1, coord.WorkerRecord{Name: "one"}))
		require.NoError(t, c.AddWorker(ctx, fv10, coord.WorkerRecord{Name: "ten"}))
		require.NoError(t, c.DeleteFunction(ctx, fv1))
		ws, err := c.Workers(ctx, fv10)
		require.NoError(t, err)
		require.Equal(t, []string{"ten"}, names(ws))
		ws, err = c.Workers(ctx, fv1)
		require.NoError(t, err)
		require.Empty(t, ws)
	})

	t.Run("remove worker and list functions", func(t *testing.T) {
		c := newCoord(t)
		require.NoError(t, c.AddWorker(ctx, fv1, coord.WorkerRecord{Name: "a"}))
		require.NoError(t, c.AddWorker(ctx, fv1, coord.WorkerRecord{Name: "b"}))
		require.NoError(t, c.AddWorker(ctx, fv10, coord.WorkerRecord{Name: "c"}))
		require.NoError(t, c.RemoveWorker(ctx, fv1, "a"))
		require.NoError(t, c.RemoveWorker(ctx, fv1, "never-there"))
		ws, err := c.Workers(ctx, fv1)
		require.NoError(t, err)
		require.Equal(t, []string{"b"}, names(ws))
		fvs, err := c.Functions(ctx)
		require.NoError(t, err)
		require.Equal(t, []coord.FunctionVersion{fv1, fv10}, fvs)
	})

	t.Run("registered engines are listed", func(t *testing.T) {
		c := newCoord(t)
		es, err := c.Engines(ctx)
		require.NoError(t, err)
		require.Empty(t, es)
		for _, e := range []string{"engine-b#2", "engine-a#1", "engine-b#2"} {
			require.NoError(t, c.Register(ctx, e))
		}
		es, err = c.Engines(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"engine-a#1", "engine-b#2"}, es, "sorted, each once")
		es, err = c.RecentEngines(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"engine-a#1", "engine-b#2"}, es, "own registrations seen at once")
	})

	t.Run("lock excludes and waits", func(t *testing.T) {
		c := newCoord(t)
		unlock, err := c.Lock(ctx, "fn")
		require.NoError(t, err)

		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err = c.Lock(short, "fn")
		require.Error(t, err, "a held lock must not be taken twice")

		other, err := c.Lock(ctx, "other")
		require.NoError(t, err, "different names are independent")
		other()

		got := make(chan struct{})
		go func() {
			u, err := c.Lock(ctx, "fn")
			if err == nil {
				u()
			}
			close(got)
		}()
		time.Sleep(50 * time.Millisecond)
		unlock()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("waiter did not get the lock after unlock")
		}
	})

	t.Run("lock serialises critical sections", func(t *testing.T) {
		c := newCoord(t)
		var mu sync.Mutex
		inside, maxInside := 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := c.Lock(ctx, "crit")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				maxInside = max(maxInside, inside)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				u()
			}()
		}
		wg.Wait()
		require.Equal(t, 1, maxInside)
	})
}

func names(ws []coord.WorkerRecord) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}
