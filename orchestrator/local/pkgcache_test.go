package local

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
)

// countingPackage is a package of one file of size zero bytes (beside
// main.py) whose Open calls are counted: one per extraction. Each Open
// waits until wait calls arrived or hold passed, so that concurrent
// extractions, if any, overlap.
func countingPackage(t *testing.T, size int, opens *atomic.Int64, wait int64, hold time.Duration) orchestrator.Package {
	p := orchestratortest.ZipPackage(t, map[string]string{"main.py": "x = 1\n", "blob.bin": strings.Repeat("\x00", size)})
	open := p.Open
	p.Open = func(ctx context.Context) (io.ReadCloser, error) {
		opens.Add(1)
		deadline := time.Now().Add(hold)
		for opens.Load() < wait && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return open(ctx)
	}
	return p
}

// cacheEntries lists the package cache's entries: in use or not, and removed
// ones still on disk.
func cacheEntries(t *testing.T, o *Orchestrator) []cacheEntry {
	t.Helper()
	var out []cacheEntry
	require.NoError(t, o.pkgs.locked(func() error { out = o.pkgs.scanLocked(); return nil }))
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestPackageCache_OneCopyPerVersion(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, nil)
	e.pool(t)
	var opens atomic.Int64
	fn := e.function(t, "fn-once", entryEcho)
	fn.Package = countingPackage(t, 1<<20, &opens, 0, 0)

	var ws []orchestrator.Worker
	for _, count := range []int{2, 1} { // separate ScaleUps share the copy too
		got, err := e.o.ScaleUp(context.Background(), fn, count)
		require.NoError(t, err)
		ws = append(ws, got...)
	}
	require.EqualValues(t, 1, opens.Load(), "unpacked once")
	entries := cacheEntries(t, e.o)
	require.Len(t, entries, 1)
	require.Equal(t, 3, entries[0].users, "counted by the workers using it")
	blob := inode(t, filepath.Join(entries[0].path, entryTreeName, "blob.bin"))
	for _, w := range ws {
		require.Equal(t, blob, inode(t, filepath.Join(e.dir, w.Name, packagesName, fn.ID, "blob.bin")), "worker %s shares the copy", w.Name)
	}

	t.Run("another version or package is another copy", func(t *testing.T) {
		v1 := fn
		v1.Version = 1
		_, err := e.o.ScaleUp(context.Background(), v1, 1)
		require.NoError(t, err)
		changed := fn
		changed.Package.MD5 = "0123456789abcdef0123456789abcdef"
		_, err = e.o.ScaleUp(context.Background(), changed, 1)
		require.NoError(t, err)
		require.EqualValues(t, 3, opens.Load())
		require.Len(t, cacheEntries(t, e.o), 3)
	})

	t.Run("unused once its workers are gone, removed with its version", func(t *testing.T) {
		for _, w := range ws {
			require.NoError(t, e.o.DeleteWorker(context.Background(), w))
		}
		for _, en := range cacheEntries(t, e.o) {
			if en.meta.Version == 0 && en.meta.MD5 == "" {
				require.Zero(t, en.users)
			}
		}
		require.NoError(t, e.o.DeleteFunction(context.Background(), fn.ID, 0))
		for _, en := range cacheEntries(t, e.o) {
			require.Equal(t, 1, en.meta.Version, "only version 1's copy is left: %+v", en)
		}
	})
}

func TestPackageCache_ConcurrentFirstUseUnpacksOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		size    int
		budget  int64
		wantErr string
	}{
		{name: "fits", size: 1 << 20},
		{name: "larger than the budget", size: 2 << 20, budget: 1 << 20,
			wantErr: "the package of function fn-race version 0 expands to more than the 1048576 bytes all unpacked packages may take on this engine ([local_orchestrator] package_cache_size)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize = tc.budget })
			e.pool(t)
			const callers = 4
			var opens atomic.Int64
			fn := e.function(t, "fn-race", entryEcho)
			fn.Package = countingPackage(t, tc.size, &opens, callers, 300*time.Millisecond)
			var wg sync.WaitGroup
			errs := make([]error, callers)
			for i := range callers {
				wg.Go(func() { _, errs[i] = e.o.ScaleUp(context.Background(), fn, 1) })
			}
			wg.Wait()
			require.EqualValues(t, 1, opens.Load(), "one extraction for every caller")
			for _, err := range errs {
				if tc.wantErr == "" {
					require.NoError(t, err)
				} else {
					require.ErrorContains(t, err, tc.wantErr)
				}
			}
			entries := cacheEntries(t, e.o)
			if tc.wantErr == "" {
				require.Len(t, entries, 1)
				require.Equal(t, callers, entries[0].users)
			} else {
				require.Empty(t, entries, "nothing kept of a package that cannot fit")
			}
			left, err := os.ReadDir(e.o.pkgs.dir)
			require.NoError(t, err)
			for _, d := range left {
				require.False(t, strings.HasPrefix(d.Name(), cacheTmpPrefix), "no extraction left behind: %s", d.Name())
			}
		})
	}
}

// TestPackageCache_Budget: unused copies are evicted, least recently used
// first, to make room; copies in use are not, and a package that does not
// fit beside them fails with the reason.
func TestPackageCache_Budget(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize = 3*mib + mib/2 })
	e.pool(t)
	var opens atomic.Int64
	fns := map[string]orchestrator.Function{}
	workers := map[string]orchestrator.Worker{}
	for _, id := range []string{"fn-a", "fn-b", "fn-c", "fn-d"} {
		fn := e.function(t, id, entryEcho)
		fn.Package = countingPackage(t, mib, &opens, 0, 0)
		fns[id] = fn
	}
	up := func(id string) error {
		ws, err := e.o.ScaleUp(context.Background(), fns[id], 1)
		if err == nil {
			workers[id] = ws[0]
		}
		return err
	}
	cached := func() []string {
		var out []string
		var total int64
		for _, en := range cacheEntries(t, e.o) {
			out = append(out, en.meta.Function)
			total += en.meta.Size
		}
		require.LessOrEqual(t, total, e.o.cfg.PackageCacheSize, "within the budget")
		return out
	}
	for _, id := range []string{"fn-a", "fn-b", "fn-c"} {
		require.NoError(t, up(id))
	}
	require.ElementsMatch(t, []string{"fn-a", "fn-b", "fn-c"}, cached())

	err := up("fn-d")
	require.ErrorContains(t, err, "the package cache is full: the unpacked packages of running workers take")
	require.ErrorContains(t, err, "within [local_orchestrator] package_cache_size (3670016 bytes)")
	require.ElementsMatch(t, []string{"fn-a", "fn-b", "fn-c"}, cached(), "copies in use are kept")

	// b is released after a, so a is the older unused copy.
	require.NoError(t, e.o.DeleteWorker(context.Background(), workers["fn-a"]))
	time.Sleep(10 * time.Millisecond) // distinct mtimes, whatever the file system's granularity
	require.NoError(t, e.o.DeleteWorker(context.Background(), workers["fn-b"]))
	require.NoError(t, up("fn-d"))
	require.ElementsMatch(t, []string{"fn-b", "fn-c", "fn-d"}, cached(), "the least recently used copy went")
	res, err := e.run(e.o, workers["fn-d"], fns["fn-d"])
	require.NoError(t, err)
	require.True(t, res.Success)

	require.NoError(t, up("fn-b"))
	require.EqualValues(t, 5, opens.Load(), "b's copy was still there")
}

func TestPackageCache_RestartRemovesUnusedCopies(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	first := newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir })
	first.pool(t)
	used := first.function(t, "fn-used", entryEcho)
	_, err := first.o.ScaleUp(context.Background(), used, 1)
	require.NoError(t, err)
	unused := first.function(t, "fn-unused", entryEcho)
	ws, err := first.o.ScaleUp(context.Background(), unused, 1)
	require.NoError(t, err)
	require.NoError(t, first.o.DeleteWorker(context.Background(), ws[0]))
	require.Len(t, cacheEntries(t, first.o), 2)
	stale := filepath.Join(first.o.pkgs.dir, cacheTmpPrefix+"old")
	require.NoError(t, os.MkdirAll(filepath.Join(stale, entryTreeName), 0o700))
	old := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(stale, old, old))

	// A restart of an engine sharing the directory: the copy the first
	// engine's worker uses stays.
	second := newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir; c.PoolSize = 0 })
	entries := cacheEntries(t, second.o)
	require.Len(t, entries, 1)
	require.Equal(t, "fn-used", entries[0].meta.Function)
	require.NoDirExists(t, stale)
}
