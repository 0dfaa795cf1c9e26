// Package cgroup gives each worker of the local orchestrator its own cgroup
// with cpu, memory and pids limits, on cgroup v1, v2 or a hybrid of both.
//
// Each controller is looked up on its own: a v1 hierarchy that has it, else
// the unified (v2) hierarchy if it offers it. A controller that is missing,
// or whose files cannot be written, costs one warning per Manager and the
// workers simply run without that limit: a machine without, say, the pids
// controller must still run functions.
//
// Worker groups live in <hierarchy>/<own cgroup>/<parent>/<name> when parent
// is relative (the engine's own cgroup, so whatever bounds the engine also
// bounds its workers), or <hierarchy>/<parent>/<name> when it is absolute.
// On v2 a cgroup holding processes cannot hand controllers to children (the
// "no internal processes" rule), so there a relative parent falls back to
// the same path under the hierarchy's root.
//
// This package writes a few files per controller; a general cgroup library
// (containerd/cgroups) would pull in eBPF and OCI spec dependencies and
// treats all controllers of a group as one unit, where we need each to
// degrade on its own.
package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Controller names a cgroup controller this package uses.
type Controller string

// The controllers worker limits need.
const (
	CPU    Controller = "cpu"
	Memory Controller = "memory"
	Pids   Controller = "pids"
)

// Controllers lists every controller a Manager tries to use for limits.
var Controllers = []Controller{CPU, Memory, Pids}

// CPUAcct counts a group's CPU time on v1 (CPUTime). It limits nothing, so
// a machine without it gets no warning: CPUTime is then unknown, and on v2
// every group's cpu.stat counts instead.
const CPUAcct Controller = "cpuacct"

// grouped is every controller a worker's group may have a directory in.
var grouped = []Controller{CPU, Memory, Pids, CPUAcct}

// CPUPeriod is the CFS period limits are expressed in (upstream's 100 ms).
const CPUPeriod = 100 * time.Millisecond

// Paths of the kernel's views; variables so tests can point them at a fake tree.
var (
	mountInfoPath = "/proc/self/mountinfo"
	selfCgroup    = "/proc/self/cgroup"
)

// hierarchy is where one controller's worker groups go.
type hierarchy struct {
	v2  bool
	dir string // parent directory of the worker groups
}

// Manager creates and removes worker cgroups. It is safe for concurrent use.
type Manager struct {
	log   *slog.Logger
	ctrls map[Controller]hierarchy

	mu     sync.Mutex
	warned map[Controller]bool
}

// Options configure a Manager; tests set the root of a fake tree.
type Options struct {
	// Parent is where worker groups go (see the package comment), e.g.
	// "qinling/3f2a..."; required.
	Parent string
	// Logger receives the warnings (default slog.Default()).
	Logger *slog.Logger
}

// New finds the controllers, creates the parent groups and enables the v2
// controllers on the way down. Controllers it cannot use are logged once
// and left out; the Manager is always usable.
func New(opts Options) *Manager {
	m := &Manager{log: opts.Logger, ctrls: map[Controller]hierarchy{}, warned: map[Controller]bool{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	mounts, own, err := discover()
	if err != nil {
		for _, c := range Controllers {
			m.Warn(c, "cannot read the cgroup mounts", err)
		}
		return m
	}
	parent := filepath.Clean("/" + opts.Parent)
	for _, c := range Controllers {
		mnt, ok := mounts.v1[c]
		if ok {
			dir := mnt.path
			if !filepath.IsAbs(opts.Parent) {
				dir = filepath.Join(dir, relTo(mnt.root, own.v1[c]))
			}
			dir = filepath.Join(dir, parent)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				m.Warn(c, "cannot create the parent cgroup "+dir, err)
				continue
			}
			m.ctrls[c] = hierarchy{dir: dir}
			continue
		}
		if mounts.v2 == nil || !hasController(filepath.Join(mounts.v2.path, relTo(mounts.v2.root, own.v2)), c) {
			m.Warn(c, "the controller is not available on this machine", nil)
			continue
		}
		dir, err := m.prepareV2(mounts.v2, own.v2, opts.Parent, c)
		if err != nil {
			m.Warn(c, "cannot enable the controller for worker cgroups", err)
			continue
		}
		m.ctrls[c] = hierarchy{v2: true, dir: dir}
	}
	if mnt, ok := mounts.v1[CPUAcct]; ok {
		dir := mnt.path
		if !filepath.IsAbs(opts.Parent) {
			dir = filepath.Join(dir, relTo(mnt.root, own.v1[CPUAcct]))
		}
		if dir = filepath.Join(dir, parent); os.MkdirAll(dir, 0o755) == nil {
			m.ctrls[CPUAcct] = hierarchy{dir: dir}
		}
	}
	return m
}

// prepareV2 enables c in cgroup.subtree_control from the starting level
// (the engine's cgroup, or the root for an absolute parent) down to the
// parent of the worker groups, and returns that parent's directory.
func (m *Manager) prepareV2(mnt *mount, own, parent string, c Controller) (string, error) {
	base := mnt.path
	if !filepath.IsAbs(parent) {
		base = filepath.Join(base, relTo(mnt.root, own))
	}
	dir, err := enableDown(base, parent, c)
	if errors.Is(err, syscall.EBUSY) && !filepath.IsAbs(parent) && base != mnt.path {
		// The engine's own cgroup holds processes, so it cannot have
		// controller-enabled children: use the same path under the root.
		m.log.Info("cgroup v2: the engine's cgroup holds processes; worker cgroups go under the hierarchy root instead",
			"controller", c, "engine_cgroup", base, "parent", "/"+parent)
		dir, err = enableDown(mnt.path, parent, c)
	}
	return dir, err
}

// enableDown creates base/parent and enables c at base and every level below
// it, up to (not including) the worker groups themselves.
func enableDown(base, parent string, c Controller) (string, error) {
	dir := base
	if err := enable(dir, c); err != nil {
		return "", err
	}
	for _, part := range strings.Split(strings.Trim(filepath.Clean("/"+parent), "/"), "/") {
		if part == "" {
			continue
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		if err := enable(dir, c); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func enable(dir string, c Controller) error {
	if hasWord(readString(filepath.Join(dir, "cgroup.subtree_control")), string(c)) {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+string(c)); err != nil {
		return fmt.Errorf("enable %s in %s: %w", c, dir, err)
	}
	return nil
}

func hasController(dir string, c Controller) bool {
	return hasWord(readString(filepath.Join(dir, "cgroup.controllers")), string(c))
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// Warn logs one warning per controller over the Manager's life; later
// problems with the same controller are logged at debug level.
func (m *Manager) Warn(c Controller, what string, err error) {
	m.mu.Lock()
	first := !m.warned[c]
	m.warned[c] = true
	m.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	attrs := []any{"controller", c}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	m.log.Log(context.Background(), level, "cgroup "+string(c)+": "+what+"; workers run without this limit", attrs...)
}

// Available reports whether c can be used.
func (m *Manager) Available(c Controller) bool {
	_, ok := m.ctrls[c]
	return ok
}

// Group is one worker's cgroup, over every controller that could be used.
type Group struct {
	m    *Manager
	name string
	dirs map[Controller]string
	// cpuDir is where SetCPU writes: the group's cpu directory, or its
	// child made by SplitCPU.
	cpuDir string
	// oomOne: an OOM kill on v2 takes one process, not the whole group.
	oomOne bool

	mu    sync.Mutex
	final *Events // the counters when the group was destroyed
	// fds are the counter files the usage meter reads (and resets) around
	// every call, kept open: opening a cgroup file costs several times
	// reading it (docs/benchmarks.md). Closed by Destroy.
	fds map[counterFile]int
}

// Create makes the worker's cgroup. Controllers where that fails are
// warned about and left out; a Group with no controller at all still works.
func (m *Manager) Create(name string) *Group {
	g := &Group{m: m, name: name, dirs: map[Controller]string{}}
	for _, c := range grouped {
		h, ok := m.ctrls[c]
		if !ok {
			continue
		}
		dir := filepath.Join(h.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			m.Warn(c, "cannot create the worker's cgroup", err)
			continue
		}
		g.dirs[c] = dir
	}
	g.cpuDir = g.dirs[CPU]
	return g
}

// SplitCPU creates, in the cpu hierarchy, a child group name that processes
// of uid and gid may move themselves into (its cgroup.procs and tasks are
// theirs), and makes SetCPU limit that child rather than the whole group.
// The worker's other limits stay on the group, over both. It works on a v1
// cpu hierarchy only: on v2 a group holding processes cannot have children
// with controllers. It returns the child's directory.
func (g *Group) SplitCPU(name string, uid, gid int) (string, error) {
	dir, ok := g.dirs[CPU]
	switch {
	case !ok:
		return "", errors.New("cgroup: no cpu controller")
	case g.m.ctrls[CPU].v2:
		return "", errors.New("cgroup: cpu is a v2 controller here")
	}
	child := filepath.Join(dir, name)
	if err := os.Mkdir(child, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	for _, f := range []string{"cgroup.procs", "tasks"} {
		if err := os.Chown(filepath.Join(child, f), uid, gid); err != nil {
			return "", fmt.Errorf("cgroup: %w", err)
		}
	}
	g.cpuDir = child
	return child, nil
}

// Name is the group's name (the worker's).
func (g *Group) Name() string { return g.name }

// ProcsFiles lists the cgroup.procs files a process writes "0" into to
// join the group, one per hierarchy.
func (g *Group) ProcsFiles() []string {
	var out []string
	for _, dir := range g.uniqueDirs() {
		out = append(out, filepath.Join(dir, "cgroup.procs"))
	}
	return out
}

// Join moves the process pid into the group.
func (g *Group) Join(pid int) {
	for c, dir := range g.dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			g.m.Warn(c, "cannot move the worker into its cgroup", err)
		}
	}
}

// uniqueDirs returns the group's directories, each once (v2 controllers share one).
func (g *Group) uniqueDirs() []string {
	var out []string
	for _, c := range grouped {
		if d, ok := g.dirs[c]; ok && !contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// OOMKillsOne makes the kernel's OOM killer take a single process of the
// group on v2 (where SetMemory otherwise has it kill the whole group): for
// a worker whose executions are processes of their own that the kernel
// should pick first. Call it before SetMemory. v1 always kills one.
func (g *Group) OOMKillsOne() { g.oomOne = true }

// SetPids limits the group's processes and threads to n; n <= 0 sets nothing.
func (g *Group) SetPids(n int) {
	if dir, ok := g.dirs[Pids]; ok && n > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), strconv.Itoa(n)); err != nil {
			g.m.Warn(Pids, "cannot set the limit", err)
		}
	}
}

// SetCPU limits the group to millicores thousandths of a CPU: a CFS quota
// of millicores × period / 1000 per 100 ms period, as upstream's cglimit.
// millicores <= 0 sets nothing.
func (g *Group) SetCPU(millicores int) {
	dir := g.cpuDir
	if dir == "" || millicores <= 0 {
		return
	}
	period := CPUPeriod.Microseconds()
	quota := int64(millicores) * period / 1000
	var err error
	if g.m.ctrls[CPU].v2 {
		err = writeFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota, period))
	} else {
		err = writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10))
		if err == nil {
			err = writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10))
		}
	}
	if err != nil {
		g.m.Warn(CPU, "cannot set the limit", err)
	}
}

// SetMemory limits the group's memory to bytes, and its swap so that it
// cannot page out instead (where the kernel accounts swap). On v2 an OOM
// kills the whole group, unless OOMKillsOne was called. bytes <= 0 sets
// nothing.
func (g *Group) SetMemory(bytes int64) {
	dir, ok := g.dirs[Memory]
	if !ok || bytes <= 0 {
		return
	}
	v := strconv.FormatInt(bytes, 10)
	var err error
	if g.m.ctrls[Memory].v2 {
		err = writeFile(filepath.Join(dir, "memory.max"), v)
		if err == nil {
			err = writeOptional(filepath.Join(dir, "memory.swap.max"), "0")
		}
		if err == nil {
			oomGroup := "1"
			if g.oomOne {
				oomGroup = "0"
			}
			err = writeOptional(filepath.Join(dir, "memory.oom.group"), oomGroup)
		}
	} else {
		// memory+swap must never be below memory: lowering writes memory
		// first, raising writes memory+swap first.
		mem, memsw := filepath.Join(dir, "memory.limit_in_bytes"), filepath.Join(dir, "memory.memsw.limit_in_bytes")
		if err = writeFile(mem, v); errors.Is(err, syscall.EINVAL) {
			if err = writeOptional(memsw, v); err == nil {
				err = writeFile(mem, v)
			}
		} else if err == nil {
			err = writeOptional(memsw, v)
		}
	}
	if err != nil {
		g.m.Warn(Memory, "cannot set the limit", err)
	}
}

// writeOptional writes a file the kernel may not offer (swap accounting off).
func writeOptional(path, v string) error {
	if err := writeFile(path, v); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Events are the group's counters of limits hit.
type Events struct {
	// OOMKills counts processes the kernel killed for the memory limit.
	OOMKills int64
	// PidsMax counts forks refused by the pids limit.
	PidsMax int64
}

// Events reads the counters; a controller the group lacks counts zero.
// After Destroy it returns the counters as they were then, so whoever
// explains a worker's death can still read them after it was cleaned up.
func (g *Group) Events() Events {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final != nil {
		return *g.final
	}
	return g.read()
}

func (g *Group) read() Events {
	var ev Events
	if dir, ok := g.dirs[Memory]; ok {
		file := "memory.oom_control"
		if g.m.ctrls[Memory].v2 {
			file = "memory.events"
		}
		ev.OOMKills = counter(filepath.Join(dir, file), "oom_kill")
	}
	if dir, ok := g.dirs[Pids]; ok {
		ev.PidsMax = counter(filepath.Join(dir, "pids.events"), "max")
	}
	return ev
}

// counter returns the value of key in a flat-keyed cgroup file ("key N" lines).
func counter(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if ok && string(k) == key {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	return 0
}

// CPUTime is the CPU time the group's processes used since it was created,
// and whether it is known (v1 needs the cpuacct controller).
func (g *Group) CPUTime() (time.Duration, bool) {
	if dir, ok := g.dirs[CPUAcct]; ok {
		ns, err := g.readCounter(filepath.Join(dir, "cpuacct.usage"))
		return time.Duration(ns), err == nil
	}
	for _, c := range Controllers {
		if dir, ok := g.dirs[c]; ok && g.m.ctrls[c].v2 {
			// cpu.stat is a core file of every v2 group, cpu controller or not.
			if _, err := os.Stat(filepath.Join(dir, "cpu.stat")); err == nil {
				return time.Duration(counter(filepath.Join(dir, "cpu.stat"), "usage_usec")) * time.Microsecond, true
			}
		}
	}
	return 0, false
}

// PeakMemory is the most memory the group held since ResetPeakMemory (v1)
// or since it was created (v2 before Linux 6.12 cannot reset it, and later
// kernels only per open file), in bytes; 0 when unknown.
func (g *Group) PeakMemory() int64 {
	dir, ok := g.dirs[Memory]
	if !ok {
		return 0
	}
	file := "memory.max_usage_in_bytes"
	if g.m.ctrls[Memory].v2 {
		file = "memory.peak"
	}
	n, _ := g.readCounter(filepath.Join(dir, file))
	return n
}

// ResetPeakMemory starts PeakMemory anew from the current usage (v1 only).
func (g *Group) ResetPeakMemory() {
	if dir, ok := g.dirs[Memory]; ok && !g.m.ctrls[Memory].v2 {
		_ = g.writeCounter(filepath.Join(dir, "memory.max_usage_in_bytes"), "0")
	}
}

// readCounter reads a file of the group holding one integer, through a
// descriptor kept open (fds); a kernel file read at offset 0 is produced
// anew each time.
func (g *Group) readCounter(path string) (int64, error) {
	var buf [64]byte
	n, err := g.onCounter(path, syscall.O_RDONLY, func(fd int) (int, error) { return syscall.Pread(fd, buf[:], 0) })
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
}

// writeCounter writes v to a file of the group, as writeFile, through a
// descriptor kept open.
func (g *Group) writeCounter(path, v string) error {
	_, err := g.onCounter(path, syscall.O_WRONLY, func(fd int) (int, error) { return syscall.Pwrite(fd, []byte(v), 0) })
	return err
}

// counterFile is one open descriptor of fds: a file may be open for
// reading and, apart, for writing (memory.max_usage_in_bytes).
type counterFile struct {
	path string
	mode int
}

// onCounter runs op on path's descriptor open with mode. The lock keeps
// Destroy from closing it meanwhile; once destroyed the group's files are
// gone and op does not run.
func (g *Group) onCounter(path string, mode int, op func(fd int) (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final != nil {
		return 0, fs.ErrNotExist
	}
	key := counterFile{path, mode}
	fd, ok := g.fds[key]
	if !ok {
		var err error
		if fd, err = syscall.Open(path, mode|syscall.O_CLOEXEC, 0); err != nil {
			return 0, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		if g.fds == nil {
			g.fds = map[counterFile]int{}
		}
		g.fds[key] = fd
	}
	n, err := op(fd)
	if err != nil {
		return 0, &fs.PathError{Op: "access", Path: path, Err: err}
	}
	return n, nil
}

// Destroy kills whatever still runs in the group and removes it.
func (g *Group) Destroy() error {
	g.mu.Lock()
	if g.final == nil {
		ev := g.read()
		g.final = &ev
	}
	for key, fd := range g.fds {
		_ = syscall.Close(fd)
		delete(g.fds, key)
	}
	g.mu.Unlock()
	var errs []error
	for _, dir := range g.uniqueDirs() {
		if err := removeGroup(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// destroyWait bounds how long Destroy waits for killed tasks to leave.
const destroyWait = 5 * time.Second

// removeGroup kills the tasks of the group at dir and of its children, and
// removes them all. A missing group is not an error.
func removeGroup(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				if err := removeGroup(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	deadline := time.Now().Add(destroyWait)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
		_ = writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	}
	for {
		pids := readPids(filepath.Join(dir, "cgroup.procs"))
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		err := syscall.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, syscall.ENOENT):
			return nil
		case !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline):
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(5 * time.Millisecond) // killed tasks take a moment to exit
	}
}

func readPids(path string) []int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Clean removes the worker groups under the Manager's parents whose name
// matches pattern and for which keep returns false (their worker is gone),
// killing leftover tasks first. It returns how many groups it removed.
func (m *Manager) Clean(pattern *regexp.Regexp, keep func(name string) bool) (int, error) {
	removed := map[string]bool{}
	var errs []error
	for _, dir := range m.parents() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !pattern.MatchString(e.Name()) || keep(e.Name()) {
				continue
			}
			if err := removeGroup(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
				continue
			}
			removed[e.Name()] = true
		}
	}
	return len(removed), errors.Join(errs...)
}

// Remove kills what runs in the group name and removes it; a missing group
// is not an error. It serves groups another Manager created.
func (m *Manager) Remove(name string) error {
	var errs []error
	for _, dir := range m.parents() {
		if err := removeGroup(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close removes the Manager's parent groups if no other engine uses them.
func (m *Manager) Close() {
	for _, dir := range m.parents() {
		_ = syscall.Rmdir(dir) // EBUSY: still in use, which is fine
	}
}

func (m *Manager) parents() []string {
	var out []string
	for _, c := range grouped {
		if h, ok := m.ctrls[c]; ok && !contains(out, h.dir) {
			out = append(out, h.dir)
		}
	}
	return out
}

// mount is one cgroup hierarchy's mount point and the cgroup at its root.
type mount struct {
	path, root string
}

type mounts struct {
	v1 map[Controller]mount
	v2 *mount
}

// ownCgroups is the engine's cgroup path in each hierarchy.
type ownCgroups struct {
	v1 map[Controller]string
	v2 string
}

func discover() (mounts, ownCgroups, error) {
	ms := mounts{v1: map[Controller]mount{}}
	own := ownCgroups{v1: map[Controller]string{}}
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return ms, own, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mnt := mount{path: unescape(fields[4]), root: unescape(fields[3])}
		switch fields[sep+1] {
		case "cgroup2":
			if ms.v2 == nil {
				ms.v2 = &mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(fields[sep+3], ",") {
				c := Controller(opt)
				if _, seen := ms.v1[c]; !seen && contains([]string{string(CPU), string(Memory), string(Pids), string(CPUAcct)}, opt) {
					ms.v1[c] = mnt
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ms, own, err
	}
	data, err := os.ReadFile(selfCgroup)
	if err != nil {
		return ms, own, err
	}
	for line := range strings.Lines(string(data)) {
		// hierarchy-id:controller-list:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			own.v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own.v1[Controller(c)] = parts[2]
		}
	}
	return ms, own, nil
}

// relTo returns the cgroup path p relative to a mount whose root is root
// (a container may see a hierarchy mounted from inside it).
func relTo(root, p string) string {
	if p == "" {
		return "/"
	}
	if root != "/" && (p == root || strings.HasPrefix(p, root+"/")) {
		return "/" + strings.TrimPrefix(p[len(root):], "/")
	}
	return p
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readString(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// writeFile writes v into an existing cgroup file in one write, as the
// kernel expects.
func writeFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(v)); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return f.Close()
}
