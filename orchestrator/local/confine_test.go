package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// newSandboxed returns an orchestrator running the real Python runtime in
// sandboxes, with cgroups.
func newSandboxed(t *testing.T, mutate func(*Config)) *Orchestrator {
	t.Helper()
	testutil.RequireRoot(t, "sandboxes and cgroups need root")
	requirePython(t)
	t.Parallel()
	cfg := Config{
		WorkersDir: shortTempDir(t), PoolSize: 1, Python3: python3, RuntimesDir: runtimesDir,
		Owner: "test-" + t.Name(), Logger: testLogger(t),
		Sandbox: Sandbox{Enabled: true}, CgroupParent: "qinling-test", MaxPids: 32,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	o, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close()) })
	return o
}

// pyFunction is a function whose main.py is src, on runtime rt.
func pyFunction(t *testing.T, rt, id, src string) orchestrator.Function {
	return orchestrator.Function{
		ID: id, RuntimeID: rt, Entry: "main.main", Timeout: 5 * time.Second, CPU: 300, MemorySize: 64 << 20,
		Package: orchestratortest.ZipPackage(t, map[string]string{"main.py": src}),
	}
}

func scaleUp(t *testing.T, o *Orchestrator, fn orchestrator.Function) orchestrator.Worker {
	t.Helper()
	ws, err := o.ScaleUp(context.Background(), fn, 1)
	require.NoError(t, err)
	return ws[0]
}

func run(t *testing.T, o *Orchestrator, w orchestrator.Worker, fn orchestrator.Function, input any) (orchestrator.Result, error) {
	t.Helper()
	in, err := json.Marshal(input)
	require.NoError(t, err)
	return o.Run(context.Background(), w, orchestrator.Invocation{
		ExecutionID: "exec-" + randomHex(4), FunctionID: fn.ID, Entry: fn.Entry, Input: in,
		CPU: fn.CPU, MemorySize: fn.MemorySize, Timeout: fn.Timeout,
	})
}

// workerOf returns the orchestrator's record of a worker.
func workerOf(o *Orchestrator, name string) *worker {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.workers[name]
}

// output decodes a successful result's output into v.
func output(t *testing.T, res orchestrator.Result, v any) {
	t.Helper()
	require.True(t, res.Success, "output %s logs %s", res.Output, res.Logs)
	require.NoError(t, json.Unmarshal(res.Output, v))
}

func TestLocal_SandboxConformance(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes and cgroups need root")
	requirePython(t)
	orchestratortest.Run(t, orchestratortest.Harness{
		New: func(t *testing.T) orchestrator.Orchestrator {
			o, err := New(Config{
				WorkersDir: shortTempDir(t), PoolSize: 2, Python3: python3, RuntimesDir: runtimesDir,
				Owner: "conformance", Logger: testLogger(t),
				Sandbox: Sandbox{Enabled: true}, CgroupParent: "qinling-test", MaxPids: 64,
			})
			require.NoError(t, err)
			return o
		},
		Image:    "python3",
		PoolSize: 2,
		Function: orchestratortest.PythonFunction,
	})
}

// probeSource reports what a function can see and do.
const probeSource = `import json, os, socket, time

def attempt(f):
    try:
        return 'ok: %s' % (f(),)
    except Exception as e:
        return type(e).__name__

def write(p):
    with open(p, 'w') as f:
        f.write('x')

def connect(host, port):
    start = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=5).close()
        return 'connected'
    except OSError as e:
        return '%s after %ds' % (type(e).__name__, time.monotonic() - start)

def main(port=0, paths=(), **kwargs):
    st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
    return {
        'root': sorted(os.listdir('/')),
        'pids': sorted(p for p in os.listdir('/proc') if p.isdigit()),
        'ids': [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        'capeff': st['CapEff'].strip(), 'nnp': st['NoNewPrivs'].strip(),
        'read': {p: attempt(lambda: open(p).read()[:20]) for p in paths},
        'list': {p: attempt(lambda: len(os.listdir(p))) for p in paths},
        'write': {p: attempt(lambda: write(p)) for p in ['/x', '/usr/x', '/var/qinling/packages/x', os.path.abspath(__file__) + '.new', '/tmp/x']},
        'local': connect('127.0.0.1', port),
        'outside': connect('10.255.255.1', 80),
        'hostname': socket.gethostname(),
    }
`

// listen starts a TCP listener on the host's loopback and counts connections.
func listen(t *testing.T) (port int, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	n := make(chan int, 1)
	n <- 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n <- <-n + 1
			_ = c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() int { v := <-n; n <- v; return v }
}

// hostConfig makes sure the host has a /etc/qinling/qinling.conf with a
// secret in it, as a real deployment would.
func hostConfig(t *testing.T) string {
	t.Helper()
	const path = "/etc/qinling/qinling.conf"
	if _, err := os.Stat(path); err == nil {
		return path
	}
	created := false
	if _, err := os.Stat(filepath.Dir(path)); os.IsNotExist(err) {
		require.NoError(t, os.Mkdir(filepath.Dir(path), 0o755))
		created = true
	}
	require.NoError(t, os.WriteFile(path, []byte("[database]\nconnection = mysql://qinling:secret@db/qinling\n"), 0o644))
	t.Cleanup(func() {
		_ = os.Remove(path)
		if created {
			_ = os.Remove(filepath.Dir(path))
		}
	})
	return path
}

func TestLocal_SandboxIsolation(t *testing.T) {
	o := newSandboxed(t, nil)
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}))
	conf := hostConfig(t)
	port, accepted := listen(t)

	other := pyFunction(t, "rt", "fn-other", "SECRET = 'other'\ndef main(**kw):\n    return SECRET\n")
	otherWorker := scaleUp(t, o, other)
	otherPkg := filepath.Join(o.cfg.WorkersDir, otherWorker.Name, packagesName, other.ID, "main.py")
	fn := pyFunction(t, "rt", "fn-probe", probeSource)
	w := scaleUp(t, o, fn)

	paths := []string{conf, "/etc", otherPkg, "/var/qinling/packages/" + other.ID + "/main.py", o.cfg.WorkersDir, "/root", "/home", "/sys"}
	res, err := run(t, o, w, fn, map[string]any{"port": port, "paths": paths})
	require.NoError(t, err)
	var got struct {
		Root     []string          `json:"root"`
		Pids     []string          `json:"pids"`
		IDs      []int             `json:"ids"`
		CapEff   string            `json:"capeff"`
		NNP      string            `json:"nnp"`
		Read     map[string]string `json:"read"`
		List     map[string]string `json:"list"`
		Write    map[string]string `json:"write"`
		Local    string            `json:"local"`
		Outside  string            `json:"outside"`
		Hostname string            `json:"hostname"`
	}
	output(t, res, &got)

	// Only the runtime (/usr with /lib and /lib64 links to it, and the one
	// file of /etc the interpreter imports at startup), the function's
	// package and socket under /var/qinling, /tmp, /dev and /proc.
	require.Equal(t, []string{"dev", "etc", "lib", "lib64", "proc", "tmp", "usr", "var"}, got.Root)
	require.Equal(t, []string{"1"}, got.Pids, "no host process is visible")
	require.Equal(t, []int{65534, 65534, 65534, 65534}, got.IDs)
	require.Equal(t, "0000000000000000", got.CapEff)
	require.Equal(t, "1", got.NNP)
	require.Equal(t, sandboxHostname, got.Hostname)
	for _, p := range paths {
		if p == "/etc" {
			require.Equal(t, "ok: 1", got.List[p], "only python3.11/ in /etc")
			continue
		}
		require.Equal(t, "FileNotFoundError", got.Read[p], "read %s", p)
		require.Equal(t, "FileNotFoundError", got.List[p], "list %s", p)
	}
	for p, outcome := range got.Write {
		if p == "/tmp/x" {
			require.Equal(t, "ok: None", outcome)
			continue
		}
		require.Contains(t, []string{"OSError", "PermissionError"}, outcome, "write %s", p) // EROFS is a plain OSError
	}
	require.Equal(t, "ConnectionRefusedError after 0s", got.Local)
	require.Equal(t, "OSError after 0s", got.Outside, "no route: fails at once, sends nothing")
	require.Zero(t, accepted(), "the host's listener saw no connection")

	// From the host: the process runs as a host uid of its own, from the
	// configured range (nobody inside its user namespace), in its own
	// namespaces.
	pid := workerOf(o, w.Name).pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindStringSubmatch(string(status))
	require.NotNil(t, m, "Uid line of %s", status)
	uid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.Equal(t, []string{m[1], m[1], m[1]}, m[2:], "real, effective, saved and fs uid")
	require.GreaterOrEqual(t, uid, DefaultHostUIDStart)
	require.Less(t, uid, DefaultHostUIDStart+DefaultHostUIDCount)
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts"} {
		mine, err := os.Readlink("/proc/self/ns/" + ns)
		require.NoError(t, err)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		require.NoError(t, err)
		require.NotEqual(t, mine, its, "namespace %s", ns)
	}
}

func TestLocal_SandboxNetworkRuntime(t *testing.T) {
	o := newSandboxed(t, func(c *Config) { c.Sandbox.NetworkRuntimes = []string{"rt-net"} })
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-net", Image: "python3"}))
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-closed", Image: "python3"}))
	port, accepted := listen(t)
	src := `import socket, os
def main(port, **kw):
    socket.create_connection(('127.0.0.1', port), timeout=5).close()
    return sorted(os.listdir('/etc'))
`
	fn := pyFunction(t, "rt-net", "fn-net", src)
	res, err := run(t, o, scaleUp(t, o, fn), fn, map[string]any{"port": port})
	require.NoError(t, err)
	var etc []string
	output(t, res, &etc)
	eventually(t, "the host listener to see the connection", func() bool { return accepted() == 1 })
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		require.Contains(t, etc, "resolv.conf")
	}
	require.NotContains(t, etc, "passwd")

	closed := pyFunction(t, "rt-closed", "fn-closed", src)
	res, err = run(t, o, scaleUp(t, o, closed), closed, map[string]any{"port": port})
	require.NoError(t, err)
	require.False(t, res.Success)
	require.Contains(t, string(res.Output), "Connection refused")
}

// namespaceMembers counts host processes in the PID namespace ns.
func namespaceMembers(t *testing.T, ns string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && its == ns && !processGone(pid) {
			n++
		}
	}
	return n
}

func TestLocal_SandboxEndlessLoopKillsTheTree(t *testing.T) {
	o := newSandboxed(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-loop", `import subprocess, sys
def main(**kw):
    for _ in range(3):
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)
    while True:
        pass
`)
	fn.Timeout, fn.CPU = time.Second, 100
	w := scaleUp(t, o, fn)
	wk := workerOf(o, w.Name)
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", wk.pid))
	require.NoError(t, err)
	cgroupDirs := wk.cg.ProcsFiles()
	require.NotEmpty(t, cgroupDirs)

	res, err := run(t, o, w, fn, nil)
	require.NoError(t, err)
	require.False(t, res.Success)
	require.JSONEq(t, `"Function execution timeout."`, string(res.Output))
	eventually(t, "every process of the worker to be gone", func() bool { return namespaceMembers(t, ns) == 0 })
	eventually(t, "the worker's cgroups to be removed", func() bool {
		for _, f := range cgroupDirs {
			if _, err := os.Stat(filepath.Dir(f)); err == nil {
				return false
			}
		}
		return true
	})
	_, err = run(t, o, w, fn, nil)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
}

func TestLocal_SandboxMemoryBomb(t *testing.T) {
	o := newSandboxed(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	if !o.conf.cgroups.Available(cgroup.Memory) {
		t.Skip("no memory cgroup controller")
	}
	fn := pyFunction(t, "rt", "fn-mem", `def main(mb, **kw):
    data = b'x' * (mb << 20)
    return len(data) >> 20
`)
	fn.MemorySize = 48 << 20
	w := scaleUp(t, o, fn)
	res, err := run(t, o, w, fn, map[string]any{"mb": 256})
	require.NoError(t, err, "an execution killed for its memory is the function's failure")
	require.False(t, res.Success)
	require.JSONEq(t, `"Function execution failed because of too much resource consumption"`, string(res.Output), "upstream's output, exactly")
	require.Contains(t, res.Logs, "The function exceeded its memory limit of 50331648 bytes.")
	_, err = run(t, o, w, fn, map[string]any{"mb": 1})
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound, "the killed worker is gone")

	// The next worker serves, within the limit.
	w = scaleUp(t, o, fn)
	res, err = run(t, o, w, fn, map[string]any{"mb": 8})
	require.NoError(t, err)
	require.JSONEq(t, `8`, string(res.Output))
	eventually(t, "the pool to refill", func() bool {
		c, err := o.Pool(context.Background(), "rt")
		require.NoError(t, err)
		return c.Available == 1
	})
}

func TestLocal_SandboxForkBomb(t *testing.T) {
	o := newSandboxed(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	if !o.conf.cgroups.Available(cgroup.Pids) {
		t.Skip("no pids cgroup controller")
	}
	fn := pyFunction(t, "rt", "fn-fork", `import os, time
def main(bomb=True, **kw):
    if not bomb:
        return 'fine'
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
`)
	w := scaleUp(t, o, fn)
	wk := workerOf(o, w.Name)
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", wk.pid))
	require.NoError(t, err)
	res, err := run(t, o, w, fn, map[string]any{"bomb": true})
	require.NoError(t, err)
	require.False(t, res.Success)
	require.JSONEq(t, `"Function execution failed because of too much resource consumption"`, string(res.Output), "upstream's output, exactly")
	require.Contains(t, res.Logs, "The function reached its limit of 32 processes and threads.")
	require.Contains(t, res.Logs, "Resource temporarily unavailable", "the function's own error is kept in the log")
	eventually(t, "the bomb's processes to be gone", func() bool { return namespaceMembers(t, ns) == 0 })

	w = scaleUp(t, o, fn)
	res, err = run(t, o, w, fn, map[string]any{"bomb": false})
	require.NoError(t, err)
	require.JSONEq(t, `"fine"`, string(res.Output))
}

func TestLocal_SandboxLimitsApplied(t *testing.T) {
	o := newSandboxed(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-limits", "def main(**kw):\n    return 1\n")
	fn.CPU, fn.MemorySize = 250, 40<<20
	w := scaleUp(t, o, fn)
	wk := workerOf(o, w.Name)
	want := map[string]string{
		"pids/pids.max":                      "32",
		"cpu/cpu.cfs_quota_us":               "25000",
		"cpu/cpu.cfs_period_us":              "100000",
		"memory/memory.limit_in_bytes":       "41943040",
		"memory/memory.memsw.limit_in_bytes": "41943040",
	}
	for _, procs := range wk.cg.ProcsFiles() {
		dir := filepath.Dir(procs)
		pids, err := os.ReadFile(procs)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(wk.pid), strings.TrimSpace(string(pids)), "the worker runs in %s", dir)
		for file, value := range want {
			ctrl, name, _ := strings.Cut(file, "/")
			if !strings.Contains(dir, "/"+ctrl+"/") {
				continue
			}
			got, err := os.ReadFile(filepath.Join(dir, name))
			if os.IsNotExist(err) && strings.Contains(name, "memsw") {
				continue // swap accounting off
			}
			require.NoError(t, err)
			require.Equal(t, value, strings.TrimSpace(string(got)), file)
		}
	}
	// A changed limit in an invocation is applied before it runs.
	changed := fn
	changed.MemorySize = 50 << 20
	res, err := run(t, o, w, changed, nil)
	require.NoError(t, err)
	require.True(t, res.Success)
	for _, procs := range wk.cg.ProcsFiles() {
		if strings.Contains(procs, "/memory/") {
			got, err := os.ReadFile(filepath.Join(filepath.Dir(procs), "memory.limit_in_bytes"))
			require.NoError(t, err)
			require.Equal(t, "52428800", strings.TrimSpace(string(got)))
		}
	}

	rlimits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", wk.pid))
	require.NoError(t, err)
	require.Regexp(t, `Max open files\s+1024\s+1024`, string(rlimits))
	require.Regexp(t, `Max core file size\s+0\s+0`, string(rlimits))
}

func TestLocal_SandboxKillingItsParent(t *testing.T) {
	o := newSandboxed(t, nil)
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: "python3"}))
	fn := pyFunction(t, "rt", "fn-parricide", `import os, signal
def main(**kw):
    for pid in (os.getppid(), 1, 0, -1):   # its parent is outside: getppid() is 0
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as e:
            print(pid, e)
    return 'survived'
`)
	w := scaleUp(t, o, fn)
	res, err := run(t, o, w, fn, nil)
	require.NoError(t, err)
	require.JSONEq(t, `"survived"`, string(res.Output), "logs: %s", res.Logs)
	res, err = run(t, o, w, fn, nil)
	require.NoError(t, err, "the worker, PID 1 of its namespace, cannot be killed from inside")
	require.True(t, res.Success)
}

func TestLocal_StaleCgroupsRemovedOnNew(t *testing.T) {
	o := newSandboxed(t, func(c *Config) { c.PoolSize = 0 })
	if !o.conf.cgroups.Available(cgroup.Pids) {
		t.Skip("no pids cgroup controller")
	}
	stale := o.conf.cgroups.Create("python3-00000000000000b1")
	live := o.conf.cgroups.Create("python3-00000000000000b2")
	require.NoError(t, os.Mkdir(filepath.Join(o.cfg.WorkersDir, "python3-00000000000000b2"), 0o700))
	second, err := New(Config{
		WorkersDir: o.cfg.WorkersDir, Python3: python3, RuntimesDir: runtimesDir, Logger: testLogger(t),
		Sandbox: Sandbox{Enabled: true}, CgroupParent: "qinling-test",
	})
	require.NoError(t, err)
	require.NoError(t, second.Close())
	_, err = os.Stat(filepath.Dir(stale.ProcsFiles()[0]))
	require.True(t, os.IsNotExist(err), "stale cgroup removed")
	_, err = os.Stat(filepath.Dir(live.ProcsFiles()[0]))
	require.NoError(t, err, "a worker whose directory exists keeps its cgroup")
	require.NoError(t, live.Destroy())
}

func TestNew_SandboxNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs only without root")
	}
	_, err := New(Config{WorkersDir: shortTempDir(t), Command: fakeCommand(modeServe, ""), Sandbox: Sandbox{Enabled: true}})
	require.ErrorContains(t, err, "sandbox = false")
}

// TestLocal_SandboxTimings logs worker start time, idle memory and warm
// round trip with and without sandbox and cgroups, the modes interleaved so
// that the machine's noise hits them alike (informative; not in -short).
func TestLocal_SandboxTimings(t *testing.T) {
	if os.Getenv("QINLING_TIMINGS") == "" {
		t.Skip("informative only and slow; set QINLING_TIMINGS=1 to run")
	}
	testutil.RequireRoot(t, "sandboxes and cgroups need root")
	requirePython(t)
	modes := []struct {
		name    string
		sandbox bool
		cgroups string
	}{
		{"plain", false, ""},
		{"cgroups", false, "qinling-test"},
		{"sandbox", true, ""},
		{"sandbox+cgroups", true, "qinling-test"},
	}
	ctx := context.Background()
	orchs := make([]*Orchestrator, len(modes))
	for i, m := range modes {
		o, err := New(Config{
			WorkersDir: shortTempDir(t), PoolSize: 0, Python3: python3, RuntimesDir: runtimesDir,
			Owner: "timing", Logger: testLogger(t), Sandbox: Sandbox{Enabled: m.sandbox}, CgroupParent: m.cgroups, MaxPids: 64,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, o.Close()) })
		require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}))
		orchs[i] = o
	}
	const starts = 15
	took := make([][]time.Duration, len(modes))
	rss, pss := make([]int64, len(modes)), make([]int64, len(modes))
	for range starts {
		for i, o := range orchs {
			start := time.Now()
			o.mu.Lock()
			pl := o.pools["rt"]
			o.mu.Unlock()
			w, err := o.startWorker(ctx, pl)
			require.NoError(t, err)
			took[i] = append(took[i], time.Since(start))
			time.Sleep(50 * time.Millisecond) // idle, as a pool worker
			r, p := smapsRollup(t, w.pid)
			rss[i], pss[i] = rss[i]+r, pss[i]+p
			o.stop(ctx, w)
		}
	}
	for i, m := range modes {
		slices.Sort(took[i])
		t.Logf("%-16s worker start to ready: median %s, min %s; idle worker RSS %d KiB, PSS %d KiB",
			m.name, took[i][starts/2], took[i][0], rss[i]/starts, pss[i]/starts)
	}
	for i, m := range modes {
		for _, cpu := range []int{0, 100} {
			fn := pyFunction(t, "rt", fmt.Sprintf("fn-%d", cpu), orchestratortest.PythonSources[orchestratortest.Hello])
			fn.CPU = cpu
			w := scaleUp(t, orchs[i], fn)
			_, err := run(t, orchs[i], w, fn, map[string]any{"name": "x"})
			require.NoError(t, err)
			const n = 300
			start := time.Now()
			for range n {
				res, err := run(t, orchs[i], w, fn, map[string]any{"name": "x"})
				require.NoError(t, err)
				require.True(t, res.Success)
			}
			t.Logf("%-16s warm Run round trip, cpu=%d millicores: %s", m.name, cpu, time.Since(start)/n)
		}
	}
}

// smapsRollup returns a process's RSS and PSS in KiB.
func smapsRollup(t *testing.T, pid int) (rss, pss int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "Rss:":
				rss = v
			case "Pss:":
				pss = v
			}
		}
	}
	return rss, pss
}
