package cgroup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// fakeTree points the package at a cgroup layout of plain files under a
// temporary directory: mountinfo lines (with %s for the directory), the
// process's /proc/self/cgroup, and files to create (path → content).
// Tests using it must not run in parallel.
func fakeTree(t *testing.T, mountinfo, self string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(path, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	write(filepath.Join(dir, "mountinfo"), strings.ReplaceAll(mountinfo, "%s", dir))
	write(filepath.Join(dir, "self"), self)
	for p, c := range files {
		write(filepath.Join(dir, p), c)
	}
	oldInfo, oldSelf := mountInfoPath, selfCgroup
	mountInfoPath, selfCgroup = filepath.Join(dir, "mountinfo"), filepath.Join(dir, "self")
	t.Cleanup(func() { mountInfoPath, selfCgroup = oldInfo, oldSelf })
	return dir
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// logBuffer collects log output.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), &buf
}

func TestHybrid_V1ControllersAndV2Pids(t *testing.T) {
	// cpu and memory on v1 (cpu mounted with cpuacct), pids only on the
	// unified hierarchy; the engine lives in /eng everywhere.
	w := "qinling/abc/python3-1"
	dir := fakeTree(t, `
30 20 0:29 / %s/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 20 0:30 / %s/memory rw - cgroup cgroup rw,memory
32 20 0:31 / %s/unified rw - cgroup2 cgroup2 rw
`, "3:cpu,cpuacct:/eng\n4:memory:/eng\n0::/eng\n", map[string]string{
		"cpu,cpuacct/eng/" + w + "/cpu.cfs_period_us":      "100000",
		"cpu,cpuacct/eng/" + w + "/cpu.cfs_quota_us":       "-1",
		"cpu,cpuacct/eng/" + w + "/cgroup.procs":           "",
		"memory/eng/" + w + "/memory.limit_in_bytes":       "9223372036854771712",
		"memory/eng/" + w + "/memory.memsw.limit_in_bytes": "9223372036854771712",
		"memory/eng/" + w + "/memory.oom_control":          "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"memory/eng/" + w + "/cgroup.procs":                "",
		"unified/eng/cgroup.controllers":                   "memory pids",
		"unified/eng/cgroup.subtree_control":               "",
		"unified/eng/qinling/cgroup.subtree_control":       "",
		"unified/eng/qinling/abc/cgroup.subtree_control":   "",
		"unified/eng/" + w + "/pids.max":                   "max",
		"unified/eng/" + w + "/pids.events":                "max 5\n",
		"unified/eng/" + w + "/cgroup.procs":               "",
	})
	log, buf := logBuffer()
	m := New(Options{Parent: "qinling/abc", Logger: log})
	require.Empty(t, buf.String(), "every controller is available")
	for _, c := range Controllers {
		require.True(t, m.Available(c), c)
	}
	require.Equal(t, "+pids", read(t, filepath.Join(dir, "unified/eng/qinling/abc/cgroup.subtree_control")), "pids enabled down to the parent")

	g := m.Create("python3-1")
	g.SetCPU(250)
	g.SetMemory(40 << 20)
	g.SetPids(32)
	require.Empty(t, buf.String())
	require.Equal(t, "100000", read(t, filepath.Join(dir, "cpu,cpuacct/eng", w, "cpu.cfs_period_us")))
	require.Equal(t, "25000", read(t, filepath.Join(dir, "cpu,cpuacct/eng", w, "cpu.cfs_quota_us")), "millicores × 100 µs per 100 ms")
	require.Equal(t, "41943040", read(t, filepath.Join(dir, "memory/eng", w, "memory.limit_in_bytes")))
	require.Equal(t, "41943040", read(t, filepath.Join(dir, "memory/eng", w, "memory.memsw.limit_in_bytes")), "no swapping out of the limit")
	require.Equal(t, "32", read(t, filepath.Join(dir, "unified/eng", w, "pids.max")))
	require.Equal(t, Events{OOMKills: 2, PidsMax: 5}, g.Events())
	require.ElementsMatch(t, []string{
		filepath.Join(dir, "cpu,cpuacct/eng", w, "cgroup.procs"),
		filepath.Join(dir, "memory/eng", w, "cgroup.procs"),
		filepath.Join(dir, "unified/eng", w, "cgroup.procs"),
	}, g.ProcsFiles())

	g.SetCPU(0)
	g.SetMemory(0)
	require.Equal(t, "25000", read(t, filepath.Join(dir, "cpu,cpuacct/eng", w, "cpu.cfs_quota_us")), "zero sets nothing")
}

func TestV1_SplitCPU(t *testing.T) {
	w := "qinling/python3-1"
	exec := "cpu/" + w + "/exec/"
	dir := fakeTree(t, "30 20 0:29 / %s/cpu rw - cgroup cgroup rw,cpu\n", "3:cpu:/\n", map[string]string{
		"cpu/" + w + "/cpu.cfs_period_us": "100000",
		"cpu/" + w + "/cpu.cfs_quota_us":  "-1",
		"cpu/" + w + "/cgroup.procs":      "",
		exec + "cpu.cfs_period_us":        "100000",
		exec + "cpu.cfs_quota_us":         "-1",
		exec + "cgroup.procs":             "",
		exec + "tasks":                    "",
	})
	m := New(Options{Parent: "/qinling"})
	g := m.Create("python3-1")
	child, err := g.SplitCPU("exec", os.Getuid(), os.Getgid())
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "cpu", w, "exec"), child)
	g.SetCPU(300)
	require.Equal(t, "30000", read(t, filepath.Join(dir, exec, "cpu.cfs_quota_us")), "the limit goes to the child")
	require.Equal(t, "-1", read(t, filepath.Join(dir, "cpu", w, "cpu.cfs_quota_us")), "not to the whole group")

	bare := New(Options{Parent: "/qinling"}).Create("python3-2")
	_, err = bare.SplitCPU("exec", os.Getuid(), os.Getgid())
	require.Error(t, err, "a fake tree has no kernel to create the child's files")
}

func TestV2_LimitsAndAbsoluteParent(t *testing.T) {
	w := "qinling/python3-1"
	dir := fakeTree(t, "40 20 0:40 / %s rw - cgroup2 cgroup2 rw\n", "0::/system.slice/engine.service\n", map[string]string{
		"cgroup.controllers":                             "cpu memory pids",
		"cgroup.subtree_control":                         "cpu memory pids",
		"system.slice/engine.service/cgroup.controllers": "cpu memory pids",
		"qinling/cgroup.subtree_control":                 "",
		w + "/cpu.max":                                   "max 100000",
		w + "/memory.max":                                "max",
		w + "/memory.swap.max":                           "max",
		w + "/memory.oom.group":                          "0",
		w + "/memory.events":                             "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		w + "/pids.max":                                  "max",
		w + "/cgroup.procs":                              "",
	})
	log, buf := logBuffer()
	m := New(Options{Parent: "/qinling", Logger: log})
	require.Empty(t, buf.String())
	g := m.Create("python3-1")
	g.SetCPU(100)
	g.SetMemory(32 << 20)
	require.Equal(t, "10000 100000", read(t, filepath.Join(dir, w, "cpu.max")))
	require.Equal(t, "33554432", read(t, filepath.Join(dir, w, "memory.max")))
	require.Equal(t, "0", read(t, filepath.Join(dir, w, "memory.swap.max")))
	require.Equal(t, "1", read(t, filepath.Join(dir, w, "memory.oom.group")), "an OOM kills the whole worker")
	require.Equal(t, Events{OOMKills: 1}, g.Events())
	require.Equal(t, []string{filepath.Join(dir, w, "cgroup.procs")}, g.ProcsFiles(), "one directory for every v2 controller")

	// A strict worker: one process per OOM kill, and no cpu child on v2.
	g.OOMKillsOne()
	g.SetMemory(64 << 20)
	require.Equal(t, "0", read(t, filepath.Join(dir, w, "memory.oom.group")))
	_, err := g.SplitCPU("exec", 65534, 65534)
	require.ErrorContains(t, err, "v2")
	g.SetCPU(200)
	require.Equal(t, "20000 100000", read(t, filepath.Join(dir, w, "cpu.max")), "the limit stays on the whole worker")
}

func TestMissingControllerWarnsOnce(t *testing.T) {
	dir := fakeTree(t, "30 20 0:29 / %s/cpu rw - cgroup cgroup rw,cpu\n", "3:cpu:/\n", map[string]string{
		"cpu/qinling/w1/cpu.cfs_quota_us":  "-1",
		"cpu/qinling/w1/cpu.cfs_period_us": "100000",
		"cpu/qinling/w2/cpu.cfs_quota_us":  "-1",
		"cpu/qinling/w2/cpu.cfs_period_us": "100000",
	})
	log, buf := logBuffer()
	m := New(Options{Parent: "qinling", Logger: log})
	require.True(t, m.Available(CPU))
	require.False(t, m.Available(Memory))
	require.Equal(t, 1, strings.Count(buf.String(), "controller=memory"), buf.String())
	require.Equal(t, 1, strings.Count(buf.String(), "controller=pids"), buf.String())
	for _, name := range []string{"w1", "w2"} {
		g := m.Create(name)
		g.SetMemory(1 << 20) // no memory controller: nothing to do, no more warnings
		g.SetPids(10)
		g.SetCPU(100)
		require.Equal(t, Events{}, g.Events())
	}
	require.Equal(t, 2, strings.Count(buf.String(), "level=WARN"), "one warning per missing controller: %s", buf.String())

	// A controller whose files cannot be written also warns once.
	require.NoError(t, os.Remove(filepath.Join(dir, "cpu/qinling/w1/cpu.cfs_quota_us")))
	require.NoError(t, os.Remove(filepath.Join(dir, "cpu/qinling/w2/cpu.cfs_quota_us")))
	m.Create("w1").SetCPU(100)
	m.Create("w2").SetCPU(100)
	require.Equal(t, 1, strings.Count(buf.String(), "controller=cpu"), buf.String())
}

func TestNoCgroupFS(t *testing.T) {
	fakeTree(t, "", "", nil)
	log, buf := logBuffer()
	m := New(Options{Parent: "qinling", Logger: log})
	g := m.Create("w")
	g.SetCPU(100)
	require.Empty(t, g.ProcsFiles())
	require.NoError(t, g.Destroy())
	require.Equal(t, 3, strings.Count(buf.String(), "level=WARN"))
}

func TestUnescapeAndRel(t *testing.T) {
	require.Equal(t, "/sys/fs/cgroup/a b", unescape(`/sys/fs/cgroup/a\040b`))
	require.Equal(t, "/x", relTo("/", "/x"))
	require.Equal(t, "/x", relTo("/docker/1", "/docker/1/x"))
	require.Equal(t, "/", relTo("/docker/1", "/docker/1"))
	require.Equal(t, "/", relTo("/", ""))
}

// TestReal creates a group in this machine's real hierarchies, runs a
// process in it and removes it.
func TestReal(t *testing.T) {
	testutil.RequireRoot(t, "creating cgroups needs root")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	log, buf := logBuffer()
	m := New(Options{Parent: "qinling-test/" + hex.EncodeToString(b), Logger: log})
	t.Cleanup(m.Close)
	if len(m.ctrls) == 0 {
		t.Skipf("no usable cgroup controller: %s", buf.String())
	}
	g := m.Create("python3-0123456789abcdef")
	g.SetPids(16)
	g.SetCPU(200)
	g.SetMemory(64 << 20)
	require.Empty(t, buf.String())
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	g.Join(cmd.Process.Pid)
	for _, procs := range g.ProcsFiles() {
		require.Equal(t, strconv.Itoa(cmd.Process.Pid), strings.TrimSpace(read(t, procs)))
	}
	require.Equal(t, Events{}, g.Events())

	// A stale group (its worker gone) is cleaned; a kept one survives.
	stale := m.Create("python3-00000000000000ff")
	n, err := m.Clean(regexp.MustCompile(`^python3-`), func(name string) bool { return name == g.Name() })
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for _, p := range stale.ProcsFiles() {
		_, err := os.Stat(filepath.Dir(p))
		require.True(t, os.IsNotExist(err))
	}

	start := time.Now()
	require.NoError(t, g.Destroy(), "kills what runs inside and removes the group")
	err = cmd.Wait()
	require.Error(t, err)
	require.Equal(t, syscall.SIGKILL, cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
	require.Less(t, time.Since(start), 5*time.Second)
	for _, p := range g.ProcsFiles() {
		_, err := os.Stat(filepath.Dir(p))
		require.True(t, os.IsNotExist(err))
	}
	require.NoError(t, g.Destroy(), "destroying twice is fine")
}

// TestReal_Usage reads what a process in a real group used: its CPU time
// and its peak memory, which a reset starts anew (v1).
func TestReal_Usage(t *testing.T) {
	testutil.RequireRoot(t, "creating cgroups needs root")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	m := New(Options{Parent: "qinling-test/" + hex.EncodeToString(b)})
	t.Cleanup(m.Close)
	if !m.Available(Memory) {
		t.Skip("no memory controller here")
	}
	g := m.Create("python3-00000000000000aa")
	t.Cleanup(func() { _ = g.Destroy() })
	before, known := g.CPUTime()
	require.True(t, known, "cpuacct (v1) or cpu.stat (v2) counts CPU time")
	require.Zero(t, before)
	// The shell waits for a line, so that it burns CPU only once it is inside.
	cmd := exec.Command("sh", "-c", "read x; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	g.Join(cmd.Process.Pid)
	g.ResetPeakMemory()
	_, err = stdin.Write([]byte("go\n"))
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
	used, _ := g.CPUTime()
	require.Greater(t, used, time.Duration(0), "the loop's CPU time is counted")
	require.Greater(t, g.PeakMemory(), int64(0), "the shell's memory is counted")
}
