package local

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
	"github.com/qinling-go/qinling/pkg/archive"
)

const python3 = "/usr/bin/python3"

// runtimesDir is the source tree's runtimes/ directory.
var runtimesDir, _ = filepath.Abs("../../runtimes")

// shortTempDir is a temporary directory with a short path: unix socket
// paths are limited to 107 bytes, and t.TempDir embeds the test's name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qlw")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func requirePython(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(python3); err != nil {
		t.Skipf("%s not available: %v", python3, err)
	}
	if _, err := os.Stat(filepath.Join(runtimesDir, "python3", "server.py")); err != nil {
		t.Skipf("python3 runtime not available: %v", err)
	}
}

// newPython returns an orchestrator running the real Python runtime.
func newPython(t testing.TB, poolSize int) *Orchestrator {
	t.Helper()
	o, err := New(Config{
		WorkersDir: shortTempDir(t), PoolSize: poolSize, Python3: python3, RuntimesDir: runtimesDir,
		Owner: "test-" + t.Name(), Logger: testLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close()) })
	return o
}

func TestLocal_Conformance(t *testing.T) {
	requirePython(t)
	orchestratortest.Run(t, orchestratortest.Harness{
		New: func(t *testing.T) orchestrator.Orchestrator {
			o, err := New(Config{
				WorkersDir: shortTempDir(t), PoolSize: 2, Python3: python3, RuntimesDir: runtimesDir,
				Owner: "conformance", Logger: testLogger(t),
			})
			require.NoError(t, err)
			return o
		},
		Image:    "openstackqinling/python3-runtime:0.0.2",
		PoolSize: 2,
		Function: orchestratortest.PythonFunction,
	})
}

func TestRuntimeKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		image string
		ok    bool
	}{
		{image: "python3", ok: true},
		{image: "python3.11", ok: true},
		{image: "openstackqinling/python3-runtime:0.0.2", ok: true},
		{image: "openstackqinling/python-runtime", ok: true},
		{image: "registry.example.com:5000/team/python3-runtime:latest", ok: true},
		{image: "python3-runtime@sha256:0123abcd", ok: true},
		{image: "openstackqinling/ruby-runtime:0.0.2"},
		{image: "python2"},
		{image: "python3.x"},
		{image: "my/python3-runtime-custom:1"},
		{image: "python3-runtime/other:1"},
		{image: ""},
	} {
		t.Run(tc.image, func(t *testing.T) {
			kind, err := RuntimeKind(tc.image)
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, KindPython3, kind)
				return
			}
			require.ErrorIs(t, err, orchestrator.ErrImageNotRunnable)
			require.ErrorContains(t, err, fmt.Sprintf("%q", tc.image))
			require.ErrorContains(t, err, "python3-runtime")
		})
	}
}

func TestNew_Validation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "workers dir required", cfg: Config{}, want: "WorkersDir is required"},
		{name: "socket path too long", cfg: Config{WorkersDir: "/tmp/" + strings.Repeat("d", 90), Command: fakeCommand(modeServe, "")}, want: "too long"},
		{name: "negative pool", cfg: Config{WorkersDir: "/tmp/x", PoolSize: -1, Command: fakeCommand(modeServe, "")}, want: "negative"},
		{name: "missing runtime", cfg: Config{WorkersDir: "/tmp/x", RuntimesDir: "/nonexistent"}, want: "server.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// fakeEnv is an orchestrator running the test binary as its runtime.
type fakeEnv struct {
	o        *Orchestrator
	dir      string // WorkersDir
	childPID string // file where entryHang's child writes its pid
	rt       string
}

func newFake(t *testing.T, mode string, mutate func(*Config)) *fakeEnv {
	t.Helper()
	e := &fakeEnv{dir: shortTempDir(t), rt: "rt-fake"}
	e.childPID = filepath.Join(shortTempDir(t), "child.pid")
	cfg := Config{
		WorkersDir: e.dir, PoolSize: 1, Owner: "test", Logger: testLogger(t),
		Command: fakeCommand(mode, e.childPID), RunGrace: 200 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e.dir = cfg.WorkersDir
	o, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close()) })
	e.o = o
	return e
}

func (e *fakeEnv) pool(t *testing.T) {
	t.Helper()
	require.NoError(t, e.o.CreatePool(context.Background(), orchestrator.Runtime{ID: e.rt, Image: "python3"}))
}

func (e *fakeEnv) function(t *testing.T, id, entry string) orchestrator.Function {
	return orchestrator.Function{
		ID: id, RuntimeID: e.rt, Entry: entry, Timeout: 300 * time.Millisecond,
		Package: orchestratortest.ZipPackage(t, map[string]string{"main.py": "x = 1\n", "lib/util.py": "y = 2\n"}),
	}
}

func (e *fakeEnv) run(o orchestrator.Orchestrator, w orchestrator.Worker, fn orchestrator.Function) (orchestrator.Result, error) {
	return o.Run(context.Background(), w, orchestrator.Invocation{
		ExecutionID: "exec", FunctionID: fn.ID, Entry: fn.Entry, Timeout: fn.Timeout, Input: json.RawMessage(`{"a":1}`),
	})
}

// workerPID reads a worker's pid from its record.
func (e *fakeEnv) workerPID(t *testing.T, name string) int {
	t.Helper()
	rec, err := readRecord(filepath.Join(e.dir, name))
	require.NoError(t, err)
	return rec.PID
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 5*time.Millisecond, what)
}

func TestLocal_WorkerCrashDuringRunIsLost(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, nil)
	e.pool(t)
	fn := e.function(t, "fn-crash", entryCrash)
	ws, err := e.o.ScaleUp(context.Background(), fn, 1)
	require.NoError(t, err)

	_, err = e.run(e.o, ws[0], fn)
	require.ErrorIs(t, err, orchestrator.ErrWorkerLost)
	eventually(t, "the crashed worker's directory to go", func() bool {
		_, err := os.Stat(filepath.Join(e.dir, ws[0].Name))
		return os.IsNotExist(err)
	})
	_, err = e.run(e.o, ws[0], fn)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
}

func TestLocal_StuckWorkerIsKilledWithItsChildren(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, nil)
	e.pool(t)
	fn := e.function(t, "fn-hang", entryHang)
	ws, err := e.o.ScaleUp(context.Background(), fn, 1)
	require.NoError(t, err)
	pid := e.workerPID(t, ws[0].Name)

	start := time.Now()
	res, err := e.run(e.o, ws[0], fn)
	require.NoError(t, err, "a stuck worker is a timed-out execution, not an error")
	require.GreaterOrEqual(t, time.Since(start), fn.Timeout+200*time.Millisecond)
	require.False(t, res.Success)
	require.JSONEq(t, `"Function execution timeout."`, string(res.Output))

	data, err := os.ReadFile(e.childPID)
	require.NoError(t, err)
	child, err := strconv.Atoi(string(data))
	require.NoError(t, err)
	eventually(t, "the worker and its child to die", func() bool { return processGone(pid) && processGone(child) })
	eventually(t, "the worker's directory to go", func() bool {
		_, err := os.Stat(filepath.Join(e.dir, ws[0].Name))
		return os.IsNotExist(err)
	})
	_, err = e.run(e.o, ws[0], fn)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
}

func TestLocal_StartFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mode, want string
		// The worker that exits is not waited for: a timeout it never
		// needs leaves room for a loaded machine's slow start.
		timeout time.Duration
	}{
		{name: "exit before ready carries the output", mode: modeExitEarly, want: "fake runtime: bad config", timeout: time.Minute},
		{name: "never ready times out", mode: modeNeverReady, want: "not ready after", timeout: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFake(t, tc.mode, func(c *Config) { c.StartTimeout = tc.timeout })
			err := e.o.CreatePool(context.Background(), orchestrator.Runtime{ID: e.rt, Image: "python3"})
			require.ErrorContains(t, err, tc.want)
			_, err = e.o.Pool(context.Background(), e.rt)
			require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
			require.Empty(t, workersDirEntries(t, e.dir), "failed workers leave no directory")
		})
	}
}

func TestLocal_ExitedWorkerIsReplaced(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, func(c *Config) { c.PoolSize = 2 })
	e.pool(t)
	recs, err := scanRecords(e.dir)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.NoError(t, exec.Command("kill", "-9", strconv.Itoa(recs[0].PID)).Run())

	eventually(t, "a replacement worker", func() bool {
		now, err := scanRecords(e.dir)
		require.NoError(t, err)
		c, err := e.o.Pool(context.Background(), e.rt)
		require.NoError(t, err)
		return len(now) == 2 && now[0].Name != recs[0].Name && now[1].Name != recs[0].Name && c.Available == 2
	})
}

func TestLocal_PackageDelivery(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, nil)
	e.pool(t)

	t.Run("every worker gets the package, beyond the pool size", func(t *testing.T) {
		fn := e.function(t, "fn-pkg", entryEcho)
		ws, err := e.o.ScaleUp(context.Background(), fn, 3)
		require.NoError(t, err)
		require.Len(t, ws, 3)
		for _, w := range ws {
			for file, want := range map[string]string{"main.py": "x = 1\n", "lib/util.py": "y = 2\n"} {
				got, err := os.ReadFile(filepath.Join(e.dir, w.Name, packagesName, fn.ID, file))
				require.NoError(t, err)
				require.Equal(t, want, string(got))
			}
			rec, err := readRecord(filepath.Join(e.dir, w.Name))
			require.NoError(t, err)
			require.Equal(t, "fn-pkg", rec.Function)
			require.Equal(t, "test", rec.Owner)
			res, err := e.run(e.o, w, fn)
			require.NoError(t, err)
			require.JSONEq(t, `{"a":1}`, string(res.Output))
		}
	})

	t.Run("a package file on disk is extracted in place", func(t *testing.T) {
		fn := e.function(t, "fn-file", entryEcho)
		rc, err := fn.Package.Open(context.Background())
		require.NoError(t, err)
		zipPath := filepath.Join(shortTempDir(t), "pkg.zip")
		f, err := os.Create(zipPath)
		require.NoError(t, err)
		_, err = io.Copy(f, rc)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		fn.Package.Open = func(context.Context) (io.ReadCloser, error) { return os.Open(zipPath) }
		ws, err := e.o.ScaleUp(context.Background(), fn, 1)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(e.dir, ws[0].Name, packagesName, fn.ID, "lib", "util.py"))
		require.NoError(t, err)
		require.Equal(t, "y = 2\n", string(got))
	})

	t.Run("a bad package fails and leaves nothing specialised", func(t *testing.T) {
		fn := e.function(t, "fn-bad", entryEcho)
		fn.Package = orchestratortest.ZipPackage(t, map[string]string{"../escape.py": "x"})
		_, err := e.o.ScaleUp(context.Background(), fn, 2)
		require.ErrorIs(t, err, archive.ErrInvalid)
		eventually(t, "the pool to be whole again", func() bool {
			c, err := e.o.Pool(context.Background(), e.rt)
			require.NoError(t, err)
			return c.Available == 1
		})
		recs, err := scanRecords(e.dir)
		require.NoError(t, err)
		for _, r := range recs {
			require.NotEqual(t, "fn-bad", r.Function)
		}
	})

	t.Run("invalid function ids are refused", func(t *testing.T) {
		for _, id := range []string{"", ".", "..", "a/b"} {
			_, err := e.o.ScaleUp(context.Background(), e.function(t, id, entryEcho), 1)
			require.ErrorContains(t, err, "not a valid function id", "id %q", id)
		}
	})
}

func TestLocal_StaleDirsRemovedOnNew(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)

	// A live worker of another instance must survive.
	other := newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir })
	other.pool(t)
	live, err := scanRecords(dir)
	require.NoError(t, err)
	require.Len(t, live, 1)

	deadCmd := exec.Command("true")
	require.NoError(t, deadCmd.Run())
	old := time.Now().Add(-2 * time.Hour)
	mk := func(name string, rec *record, age time.Time) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Join(p, packagesName), 0o700))
		if rec != nil {
			rec.Name = name
			rec.Socket = filepath.Join(p, socketName)
			require.NoError(t, writeRecord(p, *rec))
		}
		require.NoError(t, os.Chtimes(p, age, age))
		return p
	}
	dead := mk("python3-00000000000000a1", &record{PID: deadCmd.Process.Pid}, time.Now())
	reused := mk("python3-00000000000000a2", &record{PID: os.Getpid()}, time.Now()) // alive, but not that worker
	unrecordedOld := mk("python3-00000000000000a3", nil, old)
	unrecordedNew := mk("python3-00000000000000a4", nil, time.Now())
	extractOld := mk(".extract-123", nil, old)
	unrelated := mk("my-data", nil, old)

	_ = newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir; c.PoolSize = 0 })

	for path, kept := range map[string]bool{
		dead: false, reused: false, unrecordedOld: false, extractOld: false,
		unrecordedNew: true, unrelated: true, filepath.Join(dir, live[0].Name): true,
	} {
		_, err := os.Stat(path)
		require.Equal(t, kept, err == nil, "%s kept", filepath.Base(path))
	}
}

func TestLocal_SharedWorkersDir(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	logger, logged := recordingLogger(t)
	first := newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir; c.Owner = "engine-1"; c.Logger = logger })
	second := newFake(t, modeServe, func(c *Config) { c.WorkersDir = dir; c.Owner = "engine-2"; c.PoolSize = 0 })
	first.pool(t)
	fn := first.function(t, "fn-shared", entryEcho)
	ws, err := first.o.ScaleUp(context.Background(), fn, 2)
	require.NoError(t, err)
	kept := first.function(t, "fn-kept", entryEcho)
	keptWorkers, err := first.o.ScaleUp(context.Background(), kept, 2)
	require.NoError(t, err)
	pids := []int{first.workerPID(t, ws[0].Name), first.workerPID(t, ws[1].Name)}

	t.Run("DeleteFunction", func(t *testing.T) {
		require.NoError(t, second.o.DeleteFunction(context.Background(), "fn-shared", 0))
		for i, w := range ws {
			// Killed and dying: its memory is released (the command line
			// the check reads is gone) a moment before it becomes a zombie.
			eventually(t, "worker "+w.Name+" to die", func() bool { return processGone(pids[i]) })
			_, err := os.Stat(filepath.Join(dir, w.Name))
			require.True(t, os.IsNotExist(err))
			eventually(t, "the owner to forget the worker", func() bool {
				_, err := first.run(first.o, w, fn)
				return err != nil && strings.Contains(err.Error(), orchestrator.ErrWorkerNotFound.Error())
			})
		}
		res, err := first.run(first.o, keptWorkers[0], kept)
		require.NoError(t, err)
		require.True(t, res.Success)
		// The owner knows the kill was asked for.
		require.Contains(t, logged(), "worker stopped by another instance")
		require.NotContains(t, logged(), "exited unexpectedly")
	})

	t.Run("DeleteWorker", func(t *testing.T) {
		pid := first.workerPID(t, keptWorkers[0].Name)
		require.NoError(t, second.o.DeleteWorker(context.Background(), keptWorkers[0]))
		eventually(t, "the worker to die", func() bool { return processGone(pid) })
		eventually(t, "the owner to forget the worker", func() bool {
			_, err := first.run(first.o, keptWorkers[0], kept)
			return err != nil
		})
		res, err := first.run(first.o, keptWorkers[1], kept)
		require.NoError(t, err)
		require.True(t, res.Success)
	})
}

// workersDirEntries lists what is in a workers directory besides the
// package cache, which must hold nothing but its lock file.
func workersDirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if e.Name() != cacheDirName {
			out = append(out, e.Name())
			continue
		}
		cached, err := os.ReadDir(filepath.Join(dir, cacheDirName))
		require.NoError(t, err)
		for _, c := range cached {
			if c.Name() != cacheLockName {
				out = append(out, filepath.Join(cacheDirName, c.Name()))
			}
		}
	}
	return out
}

func TestLocal_CloseStopsEverything(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, func(c *Config) { c.PoolSize = 2 })
	e.pool(t)
	_, err := e.o.ScaleUp(context.Background(), e.function(t, "fn-close", entryEcho), 2)
	require.NoError(t, err)
	recs, err := scanRecords(e.dir)
	require.NoError(t, err)
	require.NotEmpty(t, recs)

	require.NoError(t, e.o.Close())
	for _, r := range recs {
		require.True(t, processGone(r.PID), "worker %s still runs", r.Name)
	}
	require.Empty(t, workersDirEntries(t, e.dir))
	require.ErrorContains(t, e.o.CreatePool(context.Background(), orchestrator.Runtime{ID: "x", Image: "python3"}), "closed")
	require.NoError(t, e.o.Close(), "closing twice is fine")
}

func TestLocal_ConcurrentScaleUpAndDelete(t *testing.T) {
	t.Parallel()
	e := newFake(t, modeServe, func(c *Config) { c.PoolSize = 2 })
	e.pool(t)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			fn := e.function(t, fmt.Sprintf("fn-%d", i), entryEcho)
			ws, err := e.o.ScaleUp(context.Background(), fn, 2)
			if !assertNoError(t, err) {
				return
			}
			for _, w := range ws {
				_, err := e.run(e.o, w, fn)
				assertNoError(t, err)
			}
			assertNoError(t, e.o.DeleteFunction(context.Background(), fn.ID, 0))
		})
	}
	wg.Wait()
	eventually(t, "only the pool to remain", func() bool {
		c, err := e.o.Pool(context.Background(), e.rt)
		require.NoError(t, err)
		return c == orchestrator.Capacity{Total: 2, Available: 2}
	})
}

// assertNoError is require.NoError for goroutines, where FailNow is not allowed.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// TestLocal_PythonTimings logs the figures the engine's latency budget
// depends on, measured on the real runtime.
func TestLocal_PythonTimings(t *testing.T) {
	if testing.Short() {
		t.Skip("timings are informative only")
	}
	requirePython(t)
	o := newPython(t, 1)
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}))
	t.Logf("CreatePool with 1 worker (start to ready): %s", time.Since(start))

	pkg, entry := orchestratortest.PythonFunction(t, orchestratortest.Hello)
	fn := orchestrator.Function{ID: "fn-timing", RuntimeID: "rt", Entry: entry, Timeout: 5 * time.Second, Package: pkg}
	start = time.Now()
	ws, err := o.ScaleUp(ctx, fn, 1)
	require.NoError(t, err)
	t.Logf("ScaleUp 1 from a warm pool: %s", time.Since(start))

	fn2 := fn
	fn2.ID = "fn-timing-2"
	start = time.Now()
	_, err = o.ScaleUp(ctx, fn2, 3)
	require.NoError(t, err)
	t.Logf("ScaleUp 3 with 1 in the pool: %s", time.Since(start))

	require.Eventually(t, func() bool {
		c, err := o.Pool(ctx, "rt")
		require.NoError(t, err)
		return c.Available == 1
	}, 10*time.Second, 5*time.Millisecond, "refill before measuring Run")
	inv := orchestrator.Invocation{ExecutionID: "e", FunctionID: fn.ID, Entry: entry, Timeout: 5 * time.Second, Input: json.RawMessage(`{"name":"x"}`)}
	start = time.Now()
	res, err := o.Run(ctx, ws[0], inv)
	require.NoError(t, err)
	require.True(t, res.Success, "%s %s", res.Output, res.Logs)
	t.Logf("first Run (imports the module): %s", time.Since(start))
	const n = 200
	start = time.Now()
	for range n {
		_, err := o.Run(ctx, ws[0], inv)
		require.NoError(t, err)
	}
	t.Logf("warm Run round trip: %s", time.Since(start)/n)
}

// TestLocal_PreloadOnlyPythonWorkers: preloading levels are those of a
// Python worker's zygote; a strict Node.js worker has none (each execution
// is a fresh process) and its server no /preload, so it is never asked,
// neither when specialised nor when the plan is refreshed. The fake
// runtime has no /preload either: each request shows as a logged failure,
// a Python worker's two (specialised, then the plan refreshed: its level
// is still the runtime one).
func TestLocal_PreloadOnlyPythonWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		image    string
		requests int
	}{
		{image: "python3", requests: 2},
		{image: "nodejs", requests: 0},
	} {
		t.Run(tc.image, func(t *testing.T) {
			t.Parallel()
			logger, logged := recordingLogger(t)
			e := newFake(t, modeServe, func(c *Config) {
				c.Logger = logger
				c.Isolation = Isolation{Strict: true, Preload: Preload{Policy: preload.Static{Level: preload.Function}, Interval: time.Hour}}
			})
			require.NoError(t, e.o.CreatePool(context.Background(), orchestrator.Runtime{ID: e.rt, Image: tc.image}))
			e.o.pre.update(time.Now()) // the plan: every function at the function level
			fn := e.function(t, "fn-"+tc.image, entryEcho)
			ws, err := e.o.ScaleUp(context.Background(), fn, 1)
			require.NoError(t, err)
			res, err := e.run(e.o, ws[0], fn)
			require.NoError(t, err)
			require.True(t, res.Success)
			e.o.pre.update(time.Now())
			require.NoError(t, e.o.Close()) // waits for the requests update sent
			require.Equal(t, tc.requests, strings.Count(logged(), "could not change a worker's preloading"), logged())
		})
	}
}
