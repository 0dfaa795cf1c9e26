package local

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
			e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = tc.budget, 100 })
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
	// One project may take it all: the rule under test is the whole budget's.
	e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = 3*mib+mib/2, 100 })
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

// maxDiskUsage samples what dir takes on disk until stop is closed and
// returns the most it saw.
func maxDiskUsage(t *testing.T, dir string, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var most int64
		for {
			if n, err := treeSize(dir); err == nil {
				most = max(most, n)
			}
			select {
			case <-stop:
				out <- most
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return out
}

// TestPackageCache_ConcurrentUnpacksReserve: cold starts of several
// functions at once, whose packages together exceed the budget, reserve
// their expansion before unpacking: the cache never holds more than the
// budget, not even for a moment, and those that do not fit fail with the
// reason before writing anything.
func TestPackageCache_ConcurrentUnpacksReserve(t *testing.T) {
	t.Parallel()
	const mib, callers = 1 << 20, 6
	e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = 3*mib+mib/2, 100 })
	e.pool(t)
	var opens atomic.Int64
	fns := make([]orchestrator.Function, callers)
	for i := range fns {
		fns[i] = e.function(t, "fn-cold-"+strconv.Itoa(i), entryEcho)
		fns[i].Package = countingPackage(t, mib, &opens, callers, 500*time.Millisecond)
	}
	stop := make(chan struct{})
	most := maxDiskUsage(t, e.o.pkgs.dir, stop)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range fns {
		wg.Go(func() { _, errs[i] = e.o.ScaleUp(context.Background(), fns[i], 1) })
	}
	wg.Wait()
	close(stop)
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorContains(t, err, "the package cache is full")
	}
	require.Equal(t, 3, ok, "as many as fit: %v", errs)
	require.LessOrEqual(t, <-most, e.o.cfg.PackageCacheSize+blockSize, "the cache never held more than its budget")
	for _, en := range cacheEntries(t, e.o) {
		require.False(t, en.reserved, "no reservation left: %+v", en)
	}
}

// TestPackageCache_ProjectShare: one project's packages take at most its
// share of the budget: a package of it that does not fit evicts that
// project's own unused copies, never another project's, fails with the
// reason while its copies are in use, and a package larger than the share
// fails at once, every time without unpacking it again.
func TestPackageCache_ProjectShare(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = 4*mib, 50 })
	e.pool(t)
	var opens atomic.Int64
	fn := func(id, project string, size int) orchestrator.Function {
		f := e.function(t, id, entryEcho)
		f.ProjectID, f.Package = project, countingPackage(t, size, &opens, 0, 0)
		return f
	}
	victim := fn("fn-victim", "victim", mib)
	evil1, evil2 := fn("fn-evil-1", "evil", 3*mib/2), fn("fn-evil-2", "evil", 3*mib/2)
	huge := fn("fn-evil-huge", "evil", 5*mib/2)
	cached := func() []string {
		var out []string
		for _, en := range cacheEntries(t, e.o) {
			out = append(out, en.meta.Function)
		}
		return out
	}

	ws, err := e.o.ScaleUp(context.Background(), victim, 1)
	require.NoError(t, err)
	require.NoError(t, e.o.DeleteWorker(context.Background(), ws[0]), "the victim's copy is unused, and the oldest")
	ws, err = e.o.ScaleUp(context.Background(), evil1, 1)
	require.NoError(t, err)

	_, err = e.o.ScaleUp(context.Background(), evil2, 1)
	require.ErrorContains(t, err, "do not fit within its share of the package cache (2097152 bytes")
	require.ElementsMatch(t, []string{"fn-victim", "fn-evil-1"}, cached(), "another project's copy is not evicted")

	require.NoError(t, e.o.DeleteWorker(context.Background(), ws[0]))
	_, err = e.o.ScaleUp(context.Background(), evil2, 1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"fn-victim", "fn-evil-2"}, cached(), "the project's own unused copy made room")

	before := opens.Load()
	for range 2 {
		_, err = e.o.ScaleUp(context.Background(), huge, 1)
		require.ErrorContains(t, err, "expands to more than the 2097152 bytes one project's unpacked packages may take on this engine")
	}
	require.Equal(t, before+1, opens.Load(), "opened once: its refusal is remembered")
}

// TestPackageCache_TooBigMemoBounded: what is remembered of packages that
// cannot fit goes with their function version, and never holds more than
// maxTooBig.
func TestPackageCache_TooBigMemoBounded(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	e := newFake(t, modeServe, func(c *Config) { c.PackageCacheSize = 2 * mib })
	e.pool(t)
	var opens atomic.Int64
	big := e.function(t, "fn-big", entryEcho)
	big.Package = countingPackage(t, 3*mib, &opens, 0, 0)
	memos := func() int {
		e.o.pkgs.mu.Lock()
		defer e.o.pkgs.mu.Unlock()
		return len(e.o.pkgs.tooBig)
	}
	_, err := e.o.ScaleUp(context.Background(), big, 1)
	require.ErrorContains(t, err, "expands to more than")
	require.Equal(t, 1, memos())
	require.NoError(t, e.o.DeleteFunction(context.Background(), big.ID, 0))
	require.Zero(t, memos(), "dropped with its function version")

	e.o.pkgs.mu.Lock()
	for i := range maxTooBig + 10 {
		f := big
		f.ID = "fn-big-" + strconv.Itoa(i)
		e.o.pkgs.rememberTooBig(entryKey(f), f, e.o.pkgs.errTooBig(f))
	}
	e.o.pkgs.mu.Unlock()
	require.Equal(t, maxTooBig, memos())
}

// TestPackageCache_ExitScansNothing: a worker's exit looks at its own
// package's entry alone (a stray removed entry elsewhere in the cache is
// left to the next eviction), yet removes its entry if the function
// version was deleted while it ran.
func TestPackageCache_ExitScansNothing(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, nil)
	e.pool(t)
	fn := e.function(t, "fn-exit", entryEcho)
	ws, err := e.o.ScaleUp(context.Background(), fn, 1)
	require.NoError(t, err)
	stray := filepath.Join(e.o.pkgs.dir, cacheGonePrefix+"stray")
	require.NoError(t, os.MkdirAll(stray, 0o700))

	require.NoError(t, e.o.pkgs.forget(fn.ID, 0), "deleted while its worker runs")
	require.NoDirExists(t, stray, "forget sweeps")
	require.NoError(t, os.MkdirAll(stray, 0o700))
	entries := cacheEntries(t, e.o)
	require.Len(t, entries, 2, "the set-aside entry, in use, and the stray")

	require.NoError(t, e.o.DeleteWorker(context.Background(), ws[0]))
	entries = cacheEntries(t, e.o)
	require.Len(t, entries, 1, "the worker's exit removed its set-aside entry: %+v", entries)
	require.Equal(t, stray, entries[0].path, "and looked at nothing else")
}
