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
