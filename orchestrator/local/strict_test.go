package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// newStrict returns a sandboxed orchestrator, with cgroups, whose workers
// use strict isolation.
func newStrict(t *testing.T, mutate func(*Config)) *Orchestrator {
	t.Helper()
	return newSandboxed(t, func(c *Config) {
		c.Isolation = Isolation{Strict: true, Spares: 2, Preload: Preload{Slots: 4, Interval: 100 * time.Millisecond}}
		if mutate != nil {
			mutate(c)
		}
	})
}

// sandboxedConformance is the suite's New for orchestrators with sandboxed,
// cgroup-limited workers, in strict or reuse isolation.
func sandboxedConformance(strict bool) func(t *testing.T) orchestrator.Orchestrator {
	return func(t *testing.T) orchestrator.Orchestrator {
		o, err := New(Config{
			WorkersDir: shortTempDir(t), PoolSize: 2, Python3: python3, NodeJS: nodeJS, RuntimesDir: runtimesDir,
			Owner: "conformance", Logger: testLogger(t),
			Sandbox: Sandbox{Enabled: true}, CgroupParent: "qinling-test", MaxPids: 64,
			Isolation: Isolation{Strict: strict, Spares: 2},
		})
		require.NoError(t, err)
		return o
	}
}

func TestLocal_StrictConformance(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes and cgroups need root")
	requirePython(t)
	orchestratortest.Run(t, orchestratortest.Harness{
		New:      sandboxedConformance(true),
		Image:    "python3",
		PoolSize: 2,
		Function: orchestratortest.PythonFunction,
		// Eight concurrent executions are eight processes of ~2 MiB each,
		// beside the worker's ~25 MiB (docs/isolation.md).
		MemorySize: 64 << 20,
	})
}

// stateSource tries to leave state behind for the next execution.
const stateSource = `import os
COUNT = 0
def main(**kw):
    global COUNT
    COUNT += 1
    seen = {'count': COUNT, 'tmp': sorted(os.listdir('/tmp')), 'env': os.environ.get('LEFT'),
            'cwd': os.getcwd(), 'uid': os.getuid(), 'pid': os.getpid(),
            'cgroup': open('/proc/self/cgroup').read()}
    open('/tmp/left-behind', 'w').write('x')
    os.environ['LEFT'] = 'yes'
    return seen
`

type stateSeen struct {
	Count  int      `json:"count"`
	Tmp    []string `json:"tmp"`
	Env    *string  `json:"env"`
	Cwd    string   `json:"cwd"`
	UID    int      `json:"uid"`
	PID    int      `json:"pid"`
	Cgroup string   `json:"cgroup"`
}

func TestLocal_StrictIsolation(t *testing.T) {
	o := newStrict(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-state", stateSource)
	w := scaleUp(t, o, fn)
	pids := map[int]bool{}
	for range 4 {
		res, err := run(t, o, w, fn, nil)
		require.NoError(t, err)
		var seen stateSeen
		output(t, res, &seen)
		require.Equal(t, 1, seen.Count, "module globals start afresh")
		require.Empty(t, seen.Tmp, "a private, empty /tmp")
		require.Nil(t, seen.Env)
		require.Equal(t, "/tmp", seen.Cwd)
		require.Equal(t, DefaultSandboxUID, seen.UID)
		pids[seen.PID] = true
		if o.conf.cgroups.Available(cgroup.CPU) {
			// In the worker's cgroup namespace: the executions' cpu group.
			require.Regexp(t, `(?m)^\d+:cpu:/`+execCgroup+`$`, seen.Cgroup)
		}
		require.NotNil(t, res.Timing, "strict workers report their phases")
		require.Contains(t, res.Timing, "acquire_ms")
	}
	require.Len(t, pids, 4, "a fresh process every time")
}

func TestLocal_StrictCPULimitOnExecutions(t *testing.T) {
	o := newStrict(t, nil)
	if !o.conf.cgroups.Available(cgroup.CPU) {
		t.Skip("no cpu cgroup controller")
	}
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-cpu", "def main(**kw):\n    return 1\n")
	fn.CPU = 200
	w := scaleUp(t, o, fn)
	wk := workerOf(o, w.Name)
	var cpuDir string
	for _, f := range wk.cg.ProcsFiles() {
		if strings.Contains(f, "/cpu/") {
			cpuDir = filepath.Dir(f)
		}
	}
	if cpuDir == "" {
		t.Skip("cpu is not a v1 controller here")
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	require.Equal(t, "20000", read(filepath.Join(cpuDir, execCgroup, "cpu.cfs_quota_us")), "the function's cpu limits its executions")
	require.Equal(t, "-1", read(filepath.Join(cpuDir, "cpu.cfs_quota_us")), "preparing them is the worker's overhead")
	require.Equal(t, strconv.Itoa(wk.pid), read(filepath.Join(cpuDir, "cgroup.procs"))[:len(strconv.Itoa(wk.pid))])
	res, err := run(t, o, w, fn, nil)
	require.NoError(t, err)
	require.True(t, res.Success)
	// Prepared execution processes are waiting in the executions' group.
	eventually(t, "prepared processes in the exec group", func() bool {
		return len(strings.Fields(read(filepath.Join(cpuDir, execCgroup, "cgroup.procs")))) == 2
	})
}

func TestLocal_StrictTimeoutKeepsTheWorker(t *testing.T) {
	o := newStrict(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-loop", `import subprocess, sys
def main(loop=True, **kw):
    if not loop:
        return 'fine'
    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)
    print('looping', flush=True)
    while True:
        pass
`)
	fn.Timeout = time.Second
	w := scaleUp(t, o, fn)
	wk := workerOf(o, w.Name)
	start := time.Now()
	res, err := run(t, o, w, fn, map[string]any{"loop": true})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 3*time.Second, "answered at the timeout, not after the grace")
	require.False(t, res.Success)
	require.JSONEq(t, `"Function execution timeout."`, string(res.Output))
	require.Contains(t, res.Logs, "looping\n")
	require.Contains(t, res.Logs, "Execution timed out after 1 seconds.\n")

	res, err = run(t, o, w, fn, map[string]any{"loop": false})
	require.NoError(t, err, "the same worker serves the next call")
	require.JSONEq(t, `"fine"`, string(res.Output))
	require.Equal(t, wk.pid, workerOf(o, w.Name).pid)
	eventually(t, "the process the execution started to be gone", func() bool {
		for _, p := range descendantsOf(wk.pid) {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(cmd), "sleep(300)") {
				return false
			}
		}
		return true
	})
}

// descendantsOf lists pid's descendants.
func descendantsOf(pid int) []int {
	var out []int
	for _, c := range childrenOf(pid) {
		out = append(out, c)
		out = append(out, descendantsOf(c)...)
	}
	return out
}

func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, tk := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func TestLocal_StrictLimitsKeepTheWorker(t *testing.T) {
	o := newStrict(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-bombs", `import os, time
def main(bomb='', **kw):
    if bomb == 'memory':
        data = b'x' * (256 << 20)
    if bomb == 'fork':
        while True:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
    return 'fine'
`)
	fn.MemorySize = 64 << 20
	w := scaleUp(t, o, fn)
	pid := workerOf(o, w.Name).pid
	for _, tc := range []struct {
		bomb string
		ctrl cgroup.Controller
		want string
	}{
		{"memory", cgroup.Memory, "The function exceeded its memory limit of 67108864 bytes."},
		{"fork", cgroup.Pids, "The function reached its limit of 32 processes and threads."},
	} {
		if !o.conf.cgroups.Available(tc.ctrl) {
			t.Logf("no %s controller: skipped", tc.ctrl)
			continue
		}
		res, err := run(t, o, w, fn, map[string]any{"bomb": tc.bomb})
		require.NoError(t, err, tc.bomb)
		require.False(t, res.Success)
		require.JSONEq(t, strconv.Quote(msgResources), string(res.Output), "%s: logs %s", tc.bomb, res.Logs)
		require.Contains(t, res.Logs, tc.want, "which limit, in the log")

		res, err = run(t, o, w, fn, nil)
		require.NoError(t, err, "after the %s bomb the same worker serves", tc.bomb)
		require.JSONEq(t, `"fine"`, string(res.Output))
		require.Equal(t, pid, workerOf(o, w.Name).pid)
	}
}

// TestLocal_StrictKillingItsParent: an execution can signal none of its
// worker's processes, at the runtime level (its parent is the runtime
// zygote) and at the function level (its parent is the function zygote,
// whose own filter, inherited, is the one protecting it, and its
// grandparent the runtime zygote).
func TestLocal_StrictKillingItsParent(t *testing.T) {
	o := newStrict(t, func(c *Config) { c.Isolation.Preload.Slots = 1 })
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-parricide", `import os, signal
def ppid(pid):
    with open('/proc/%d/stat' % pid) as f:
        return int(f.read().rsplit(')', 1)[1].split()[1])
def main(**kw):
    out = []
    parent = os.getppid()
    for pid in (parent, -parent, ppid(parent), -ppid(parent), 1, -1):
        try:
            os.kill(pid, signal.SIGKILL)
            out.append('sent')
        except OSError as e:
            out.append(e.strerror)
    return out
`)
	w := scaleUp(t, o, fn)
	level := func() preload.Level {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.workers[w.Name].level
	}
	denied := `["Operation not permitted", "Operation not permitted", "Operation not permitted",
		"Operation not permitted", "Operation not permitted", "Operation not permitted"]`
	for _, want := range []preload.Level{preload.Runtime, preload.Function} {
		if want == preload.Function {
			eventually(t, "the function to be preloaded", func() bool { return level() == preload.Function })
		}
		for range 3 {
			res, err := run(t, o, w, fn, nil)
			require.NoError(t, err)
			require.JSONEq(t, denied, string(res.Output), "%s: logs: %s", want, res.Logs)
		}
	}
	require.Equal(t, preload.Function, level())
}

func TestLocal_StrictPreloadFollowsTraffic(t *testing.T) {
	o := newStrict(t, func(c *Config) { c.Isolation.Preload.Slots = 1 })
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	hot := pyFunction(t, "rt", "fn-hot", "def main(**kw):\n    return 'hot'\n")
	cold := pyFunction(t, "rt", "fn-cold", "def main(**kw):\n    return 'cold'\n")
	wHot, wCold := scaleUp(t, o, hot), scaleUp(t, o, cold)
	level := func(w orchestrator.Worker) preload.Level {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.workers[w.Name].level
	}
	require.Equal(t, preload.Runtime, level(wHot), "new functions start at the runtime level")

	for range 5 {
		res, err := run(t, o, wHot, hot, nil)
		require.NoError(t, err)
		require.JSONEq(t, `"hot"`, string(res.Output))
	}
	eventually(t, "the busy function to get the slot", func() bool { return level(wHot) == preload.Function })
	res, err := run(t, o, wHot, hot, nil)
	require.NoError(t, err)
	require.JSONEq(t, `"hot"`, string(res.Output))
	require.Less(t, res.Timing["import_ms"], 1.0, "imported in the zygote, not in the execution")

	// One slot: a second busy function stays at the runtime level while
	// the first is busier.
	for range 3 {
		_, err := run(t, o, wCold, cold, nil)
		require.NoError(t, err)
	}
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, preload.Runtime, level(wCold))
	require.Equal(t, preload.Function, level(wHot))
}

func TestLocal_StrictRuntimeKinds(t *testing.T) {
	t.Parallel()
	o := &Orchestrator{cfg: Config{Isolation: Isolation{StrictRuntimes: []string{"rt-strict", "python3.11"}}}}
	require.True(t, o.strict(orchestrator.Runtime{ID: "rt-strict", Image: "python3"}))
	require.True(t, o.strict(orchestrator.Runtime{ID: "other", Image: "python3.11"}))
	require.False(t, o.strict(orchestrator.Runtime{ID: "other", Image: "python3"}))
	require.NoError(t, o.checkIsolation(orchestrator.Runtime{ID: "rt-strict"}, KindPython3))
	require.NoError(t, o.checkIsolation(orchestrator.Runtime{ID: "rt-strict"}, KindNodeJS))
	err := o.checkIsolation(orchestrator.Runtime{ID: "rt-strict"}, "ruby")
	require.ErrorIs(t, err, orchestrator.ErrImageNotRunnable)
	require.ErrorContains(t, err, "does not support strict isolation")
	require.NoError(t, o.checkIsolation(orchestrator.Runtime{ID: "other"}, "ruby"), "reuse needs nothing")
}

// TestLocal_StrictCPUBreakdown logs the CPU each process of a worker spends
// per call, with warm reuse and with strict isolation (informative).
func TestLocal_StrictCPUBreakdown(t *testing.T) {
	if os.Getenv("QINLING_TIMINGS") == "" {
		t.Skip("informative only; set QINLING_TIMINGS=1 to run")
	}
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			o := newSandboxed(t, func(c *Config) {
				c.Isolation = Isolation{Strict: strict, Spares: 2, Preload: Preload{Slots: 4, Interval: 50 * time.Millisecond}}
			})
			require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
			fn := pyFunction(t, "rt", "fn-cpu", "def main(**kw):\n    return None\n")
			w := scaleUp(t, o, fn)
			for range 30 {
				_, err := run(t, o, w, fn, nil)
				require.NoError(t, err)
			}
			time.Sleep(200 * time.Millisecond) // preloaded by now
			wk := workerOf(o, w.Name)
			procs := map[string]int{"server": wk.pid}
			for _, z := range childrenOf(wk.pid) {
				procs["zygote"] = z
				for _, fz := range childrenOf(z) {
					if len(childrenOf(fz)) > 0 {
						procs["function zygote"] = fz
					}
				}
			}
			before := map[string][2]float64{}
			for name, p := range procs {
				s, c := procCPU(t, p)
				before[name] = [2]float64{s, c}
			}
			const n = 300
			start := time.Now()
			for range n {
				res, err := run(t, o, w, fn, nil)
				require.NoError(t, err)
				require.True(t, res.Success)
			}
			wall := time.Since(start) / n
			for name, p := range procs {
				s, c := procCPU(t, p)
				t.Logf("%-15s self %.3f ms/call, reaped children %.3f ms/call", name,
					(s-before[name][0])/n*1000, (c-before[name][1])/n*1000)
			}
			t.Logf("wall %s per call, back to back", wall)
			// With room between calls (as through the API), the next
			// process is ready when a call arrives.
			lat := make([]time.Duration, 200)
			for i := range lat {
				time.Sleep(2 * time.Millisecond)
				s := time.Now()
				_, err := run(t, o, w, fn, nil)
				require.NoError(t, err)
				lat[i] = time.Since(s)
			}
			slices.Sort(lat)
			t.Logf("p50 %s per call, 2 ms apart", lat[len(lat)/2])
		})
	}
}

// procCPU returns the CPU seconds of pid, and of its reaped children.
func procCPU(t *testing.T, pid int) (self, children float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	v := func(i int) float64 { x, _ := strconv.ParseFloat(f[i], 64); return x / 100 }
	return v(11) + v(12), v(13) + v(14)
}

// TestLocal_StrictMemory logs what the worker's memory cgroup is charged,
// idle and with concurrent executions, under both isolation modes
// (informative).
func TestLocal_StrictMemory(t *testing.T) {
	if os.Getenv("QINLING_TIMINGS") == "" {
		t.Skip("informative only; set QINLING_TIMINGS=1 to run")
	}
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			o := newSandboxed(t, func(c *Config) {
				c.Isolation = Isolation{Strict: strict, Spares: 2, Preload: Preload{Slots: 4, Interval: 50 * time.Millisecond}}
			})
			if !o.conf.cgroups.Available(cgroup.Memory) {
				t.Skip("no memory controller")
			}
			require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
			fn := pyFunction(t, "rt", "fn-mem", "import time\ndef main(s=0, **kw):\n    time.sleep(s)\n    return None\n")
			fn.MemorySize = 256 << 20
			w := scaleUp(t, o, fn)
			for range 5 {
				_, err := run(t, o, w, fn, nil)
				require.NoError(t, err)
			}
			time.Sleep(300 * time.Millisecond)
			wk := workerOf(o, w.Name)
			var memDir string
			for _, f := range wk.cg.ProcsFiles() {
				if strings.Contains(f, "/memory/") {
					memDir = filepath.Dir(f)
				}
			}
			usage := func() int64 {
				b, err := os.ReadFile(filepath.Join(memDir, "memory.usage_in_bytes"))
				require.NoError(t, err)
				n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				return n >> 10
			}
			t.Logf("idle: %d KiB", usage())
			for _, n := range []int{1, 4, 8} {
				done := make(chan struct{})
				for range n {
					go func() {
						_, _ = run(t, o, w, fn, map[string]any{"s": 1})
						done <- struct{}{}
					}()
				}
				time.Sleep(600 * time.Millisecond)
				t.Logf("%d executions running: %d KiB", n, usage())
				for range n {
					<-done
				}
			}
		})
	}
}

// Under warm reuse a worker that answered a timeout is draining: it gets no
// new execution (which would race its exit), the engine takes another.
func TestLocal_ReuseTimeoutRetiresTheWorker(t *testing.T) {
	requirePython(t)
	o := newPython(t, 1)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-sleep", "import time\ndef main(**kw):\n    time.sleep(30)\n")
	fn.Timeout = time.Second
	w := scaleUp(t, o, fn)
	res, err := run(t, o, w, fn, nil)
	require.NoError(t, err)
	require.JSONEq(t, `"Function execution timeout."`, string(res.Output))
	_, err = run(t, o, w, fn, nil)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
}

// TestLocal_NodeStrictUnsandboxed: without the sandbox (development) a
// strict Node.js worker still confines each execution process: a PID
// namespace and a /tmp of its own (the host's is out of sight), its package
// kept in view although the workers directory lies below /tmp, and nothing
// carried over to the next execution.
func TestLocal_NodeStrictUnsandboxed(t *testing.T) {
	o := newNode(t, func(c *Config) {
		c.Sandbox = Sandbox{}
		c.Isolation = Isolation{Strict: true, Spares: 2}
	})
	if o.confineHelper() == "" {
		t.Skip("this test binary cannot confine execution processes (no cgo)")
	}
	marker := filepath.Join(os.TempDir(), "qinling-host-file-"+randomHex(4))
	require.NoError(t, os.WriteFile(marker, nil, 0o600))
	t.Cleanup(func() { os.Remove(marker) })
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "nodejs"}))
	fn := nodeFunction(t, "rt", "fn-unsandboxed-strict", `
const fs = require('fs');
let calls = 0;
exports.main = (context, input) => {
  calls++;
  const tmp = fs.readdirSync('/tmp');
  fs.writeFileSync('/tmp/left', 'x');
  return {calls, tmp, pid: process.pid, host: fs.existsSync(input.marker), caps: fs.readFileSync('/proc/self/status', 'utf8').match(/CapEff:\s*(\S+)/)[1]};
};
`)
	w := scaleUp(t, o, fn)
	for range 3 {
		res, err := run(t, o, w, fn, map[string]string{"marker": marker})
		require.NoError(t, err)
		var got struct {
			Calls int      `json:"calls"`
			Tmp   []string `json:"tmp"`
			PID   int      `json:"pid"`
			Host  bool     `json:"host"`
			Caps  string   `json:"caps"`
		}
		output(t, res, &got)
		require.Equal(t, 1, got.Calls)
		require.Equal(t, 1, got.PID)
		require.False(t, got.Host, "the host's /tmp is out of sight")
		require.Equal(t, "0000000000000000", got.Caps, "no capabilities, although the engine runs as root")
		// Only the directories that keep the package and the server in
		// view (the server is below /tmp when the tree is).
		serverDir := filepath.Join(runtimesDir, "nodejs")
		for _, name := range got.Tmp {
			kept := filepath.Join("/tmp", name)
			require.True(t, strings.HasPrefix(o.cfg.WorkersDir, kept) || strings.HasPrefix(serverDir, kept), "unexpected %s in /tmp", name)
		}
	}
	_, err := os.Stat(filepath.Join(os.TempDir(), "left"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
