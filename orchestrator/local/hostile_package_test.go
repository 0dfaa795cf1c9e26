package local

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
)

// The hostile cases of unpacked packages (docs/isolation.md, "Filling the
// host's disk"): one copy per function version, read-only to its workers,
// all copies within [local_orchestrator] package_cache_size.

// fnWithFiles is rt.fn with more files in its package beside src.
func (rt hostileRuntime) fnWithFiles(t *testing.T, id, src string, files map[string]string) orchestrator.Function {
	fn := rt.fn(t, id, src)
	all := maps.Clone(files)
	all[rt.main] = src
	fn.Package = orchestratortest.ZipPackage(t, all)
	return fn
}

// hostilePackageSrc tries to change its own package in every way, and
// reports how each attempt failed and the size of its blob.bin.
var hostilePackageSrc = map[string]string{
	"python": `import errno, os
HERE = os.path.dirname(os.path.abspath(__file__))
def main(**kw):
    out = {}
    def attempt(name, f):
        try:
            f()
            out[name] = 'done'
        except OSError as e:
            out[name] = errno.errorcode.get(e.errno, str(e.errno))
    attempt('create', lambda: open(os.path.join(HERE, 'new.txt'), 'w').close())
    attempt('append', lambda: open(__file__, 'a').close())
    attempt('truncate', lambda: os.truncate(os.path.join(HERE, 'blob.bin'), 0))
    attempt('mkdir', lambda: os.mkdir(os.path.join(HERE, '__pycache__')))
    attempt('chmod', lambda: os.chmod(__file__, 0o777))
    attempt('unlink', lambda: os.unlink(os.path.join(HERE, 'blob.bin')))
    attempt('packages', lambda: open(os.path.join(os.path.dirname(HERE), 'other'), 'w').close())
    attempt('rename', lambda: os.rename(os.path.join(HERE, 'blob.bin'), os.path.join(HERE, 'moved.bin')))
    attempt('link', lambda: os.link(__file__, os.path.join(HERE, 'linked.py')))
    attempt('utime', lambda: os.utime(__file__, (0, 0)))
    return {'attempts': out, 'blob': os.path.getsize(os.path.join(HERE, 'blob.bin'))}
`,
	"nodejs": `const fs = require('fs');
const path = require('path');
exports.main = () => {
  const out = {};
  const attempt = (name, f) => { try { f(); out[name] = 'done'; } catch (e) { out[name] = e.code; } };
  attempt('create', () => fs.writeFileSync(path.join(__dirname, 'new.txt'), 'x'));
  attempt('append', () => fs.appendFileSync(__filename, 'x'));
  attempt('truncate', () => fs.truncateSync(path.join(__dirname, 'blob.bin'), 0));
  attempt('mkdir', () => fs.mkdirSync(path.join(__dirname, 'cache')));
  attempt('chmod', () => fs.chmodSync(__filename, 0o777));
  attempt('unlink', () => fs.unlinkSync(path.join(__dirname, 'blob.bin')));
  attempt('packages', () => fs.writeFileSync(path.join(path.dirname(__dirname), 'other'), 'x'));
  attempt('rename', () => fs.renameSync(path.join(__dirname, 'blob.bin'), path.join(__dirname, 'moved.bin')));
  attempt('link', () => fs.linkSync(__filename, path.join(__dirname, 'linked.js')));
  attempt('utime', () => fs.utimesSync(__filename, 0, 0));
  return { attempts: out, blob: fs.statSync(path.join(__dirname, 'blob.bin')).size };
};
`,
}

// packageRun runs fn on w and checks that every attempt to change its
// package failed and that it read its whole blob.
func packageRun(t *testing.T, o *Orchestrator, w orchestrator.Worker, fn orchestrator.Function, blob int) {
	t.Helper()
	res, err := run(t, o, w, fn, nil)
	require.NoError(t, err)
	var got struct {
		Attempts map[string]string `json:"attempts"`
		Blob     int               `json:"blob"`
	}
	output(t, res, &got)
	require.Len(t, got.Attempts, 10, "%v", got.Attempts)
	for what, how := range got.Attempts {
		assert.Contains(t, []string{"EROFS", "EACCES", "EPERM"}, how, "%s: the package is read-only", what)
	}
	require.Equal(t, blob, got.Blob, "the whole package is readable")
}

// TestHostile_PackageShared: two workers of one function, from two
// ScaleUps, add the package's disk space once, share the one copy, and
// cannot change it.
func TestHostile_PackageShared(t *testing.T) {
	const blob = 8 << 20
	hostileEach(t, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := rt.fnWithFiles(t, "fn-shared", hostilePackageSrc[rt.name], map[string]string{"blob.bin": strings.Repeat("\x00", blob)})
		first := workerOf(o, scaleUp(t, o, fn).Name)
		one := diskUsage(t, o.pkgs.dir, first.dir)
		second := workerOf(o, scaleUp(t, o, fn).Name)
		two := diskUsage(t, o.pkgs.dir, first.dir, second.dir)
		assert.GreaterOrEqual(t, one, int64(blob), "the copy is counted")
		assert.Less(t, two-one, int64(1<<20), "the second worker added no copy (%d bytes with one worker, %d with two)", one, two)

		entries := cacheEntries(t, o)
		require.Len(t, entries, 1)
		require.Equal(t, 2, entries[0].users)
		tree := filepath.Join(entries[0].path, entryTreeName)
		for _, w := range []*worker{first, second} {
			require.Equal(t, inode(t, filepath.Join(tree, "blob.bin")), inode(t, filepath.Join(w.dir, packagesName, fn.ID, "blob.bin")))
			packageRun(t, o, w.public(), fn, blob)
		}
		main, err := os.ReadFile(filepath.Join(tree, rt.main))
		require.NoError(t, err)
		require.Equal(t, hostilePackageSrc[rt.name], string(main), "the copy is unchanged")
		names, err := os.ReadDir(tree)
		require.NoError(t, err)
		require.Len(t, names, 2, "nothing was added to the copy")
	})
}

// TestHostile_PackageBudget: functions whose packages together exceed
// the budget. The cache directory never holds more than the budget: a
// package that does not fit beside those of running workers, or alone,
// fails with the reason, and a copy no worker uses any more makes room.
func TestHostile_PackageBudget(t *testing.T) {
	const blob, budget = 8 << 20, 20 << 20
	hostileEachWith(t, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = budget, 100 }, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fns := map[string]orchestrator.Function{}
		for id, size := range map[string]int{"fn-a": blob, "fn-b": blob, "fn-c": blob, "fn-big": budget + 1} {
			fns[id] = rt.fnWithFiles(t, id, hostilePackageSrc[rt.name], map[string]string{"blob.bin": strings.Repeat("\x00", size)})
		}
		withinBudget := func() {
			t.Helper()
			// The budget counts each copy whole; the directory itself is one more block.
			assert.LessOrEqual(t, diskUsage(t, o.pkgs.dir), int64(budget+64<<10), "the package cache stays within its budget")
		}
		a := scaleUp(t, o, fns["fn-a"])
		b := scaleUp(t, o, fns["fn-b"])
		withinBudget()

		_, err := o.ScaleUp(context.Background(), fns["fn-c"], 1)
		require.ErrorContains(t, err, "the package cache is full")
		withinBudget()
		_, err = o.ScaleUp(context.Background(), fns["fn-big"], 1)
		require.ErrorContains(t, err, "the package of function fn-big version 0 expands to more than the 20971520 bytes all unpacked packages may take on this engine")
		withinBudget()

		require.NoError(t, o.DeleteWorker(context.Background(), a))
		c := scaleUp(t, o, fns["fn-c"])
		withinBudget()
		var kept []string
		for _, e := range cacheEntries(t, o) {
			kept = append(kept, e.meta.Function)
		}
		require.ElementsMatch(t, []string{"fn-b", "fn-c"}, kept, "fn-a's unused copy made room")
		packageRun(t, o, b, fns["fn-b"], blob)
		packageRun(t, o, c, fns["fn-c"], blob)
	})
}

// TestHostile_PackageProjectShare: two functions of one project with big
// packages try to evict another project's copy (unused, and the oldest):
// the project holds at most its share of the budget, so the second fails
// with the reason while the first runs, and then evicts the first, never
// the other project's.
func TestHostile_PackageProjectShare(t *testing.T) {
	const budget = 20 << 20
	hostileEachWith(t, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = budget, 50 }, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := func(id, project string, size int) orchestrator.Function {
			f := rt.fnWithFiles(t, id, hostilePackageSrc[rt.name], map[string]string{"blob.bin": strings.Repeat("\x00", size)})
			f.ProjectID = project
			return f
		}
		victim := fn("fn-victim", "victim", 6<<20)
		evil1, evil2 := fn("fn-evil-1", "evil", 7<<20), fn("fn-evil-2", "evil", 7<<20)
		cached := func() []string {
			var out []string
			for _, e := range cacheEntries(t, o) {
				out = append(out, e.meta.Function)
			}
			return out
		}
		require.NoError(t, o.DeleteWorker(context.Background(), scaleUp(t, o, victim)))
		first := scaleUp(t, o, evil1)

		_, err := o.ScaleUp(context.Background(), evil2, 1)
		require.ErrorContains(t, err, "do not fit within its share of the package cache")
		require.ElementsMatch(t, []string{"fn-victim", "fn-evil-1"}, cached())

		require.NoError(t, o.DeleteWorker(context.Background(), first))
		second := scaleUp(t, o, evil2)
		require.ElementsMatch(t, []string{"fn-victim", "fn-evil-2"}, cached(), "the victim's copy stayed")
		packageRun(t, o, second, evil2, 7<<20)
		packageRun(t, o, scaleUp(t, o, victim), victim, 6<<20)
	})
}

// TestHostile_PackageConcurrentColdStarts: many cold starts at once of
// functions whose packages together are half again the budget: the cache
// never holds more than the budget, even while they unpack; those that fit
// run, the others fail with the reason, none hangs.
func TestHostile_PackageConcurrentColdStarts(t *testing.T) {
	const blob, budget, callers = 6 << 20, 20 << 20, 5
	hostileEachWith(t, func(c *Config) { c.PackageCacheSize, c.PackageCacheProjectShare = budget, 100 }, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fns := make([]orchestrator.Function, callers)
		for i := range fns {
			fns[i] = rt.fnWithFiles(t, "fn-cold-"+strconv.Itoa(i), hostilePackageSrc[rt.name], map[string]string{"blob.bin": strings.Repeat("\x00", blob)})
		}
		stop := make(chan struct{})
		most := maxDiskUsage(t, o.pkgs.dir, stop)
		ws := make([][]orchestrator.Worker, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range fns {
			wg.Go(func() { ws[i], errs[i] = o.ScaleUp(context.Background(), fns[i], 1) })
		}
		wg.Wait()
		close(stop)
		assert.LessOrEqual(t, <-most, int64(budget+64<<10), "the package cache stays within its budget")
		ran := 0
		for i, err := range errs {
			if err != nil {
				require.ErrorContains(t, err, "the package cache is full")
				continue
			}
			ran++
			packageRun(t, o, ws[i][0], fns[i], blob)
		}
		require.Equal(t, 3, ran, "as many as fit: %v", errs)
	})
}
