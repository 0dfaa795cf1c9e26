// Package sandbox starts a command confined by Linux namespaces, for the
// local orchestrator's workers.
//
// Go cannot run code between fork and exec, so the confinement is set up by
// the running binary itself, re-executed through /proc/self/exe with argv[0]
// "qinling-sandbox" (docker's reexec pattern). This package's init function
// recognises that argv[0] and, instead of letting the program start, runs the
// setup and execs the real command; it never returns then. Every binary (and
// test binary) that links this package can therefore start sandboxes, with
// no hook in main.
//
// The re-executed process is created in new mount, PID, IPC, UTS and
// (unless the network is shared) network namespaces. In order, it:
//   - joins the worker's cgroups (so the command is limited from its first
//     instruction), then enters a new cgroup namespace;
//   - builds a fresh root on a small tmpfs: read-only bind mounts of exactly
//     the host paths the runtime needs, the worker's package read-only, its
//     socket directory, a private size-limited /tmp, /dev with null, zero,
//     random and urandom, and a /proc of its own PID namespace; then
//     pivot_roots into it, detaches the host's tree and makes the root read-only;
//   - brings up the loopback interface of its network namespace;
//   - sets rlimits, drops every capability (bounding set included), switches
//     to the unprivileged uid/gid (the worker's own host uid, from HostIDs),
//     sets no_new_privs and re-arms the parent-death signal (a uid change
//     clears it);
//   - installs the workers' seccomp filter (seccomp.go), on every worker;
//   - creates a user namespace of the worker's own, where its host uid is the
//     configured uid (userns_cgo.go: a re-execution, since a multithreaded
//     process cannot), and
//   - execs the command, which becomes PID 1 of its PID namespace: when it
//     dies the kernel kills everything else in the namespace, so killing one
//     process removes the whole tree, whatever the function forked.
//
// The same binary, run inside a sandbox with argv[0] "qinling-confine", is
// the helper that confines one execution process of a strict worker further
// (confine.go).
//
// The user namespace comes last, so that the setup runs as the host's root
// (mounting /proc and binding host paths from inside a user namespace is
// restricted), and owns none of the worker's other namespaces.
package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
)

// initName is argv[0] of the re-executed binary.
const initName = "qinling-sandbox"

// argSep separates the JSON spec from the command in the helper's arguments.
const argSep = "--"

// Exit statuses of the helper when it fails before the command runs.
const (
	ExitSetup = 125 // the sandbox could not be set up
	ExitExec  = 127 // the command could not be executed
)

// Spec says how to run one command.
type Spec struct {
	// Env is the command's whole environment.
	Env []string `json:"env,omitempty"`
	// Dir is the command's working directory (inside the sandbox).
	Dir string `json:"dir,omitempty"`
	// Cgroups are cgroup.procs files to join before anything else.
	Cgroups []string `json:"cgroups,omitempty"`
	// Rlimits are set (soft and hard) before the command starts.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// Isolate, if set, confines the command; nil runs it in the engine's
	// namespaces (cgroups and rlimits still apply).
	Isolate *Isolation `json:"isolate,omitempty"`
	// Check sets everything up and exits 0 instead of running the command;
	// Check uses it to tell at startup whether sandboxes work here.
	Check bool `json:"check,omitempty"`
}

// Rlimit is one resource limit.
type Rlimit struct {
	Resource int    `json:"resource"`
	Value    uint64 `json:"value"`
}

// Isolation is the confinement of a command.
type Isolation struct {
	// Root is an empty host directory; the new root is mounted on it, in the
	// command's mount namespace only.
	Root string `json:"root"`
	// Mounts build the new root, in order.
	Mounts []Mount `json:"mounts"`
	// Hostname inside the UTS namespace.
	Hostname string `json:"hostname,omitempty"`
	// Network shares the host's network namespace instead of a new one
	// with only a loopback interface.
	Network bool `json:"network,omitempty"`
	// UID and GID the command runs as; must not be 0.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// HostUID and HostGID, if set, are the host identity of the command
	// (a uid of HostIDs, unique to the worker): it runs in a user namespace
	// of its own where it is UID and GID, mapped to them and to nothing
	// else (see userns_cgo.go). Unset: it runs as UID and GID on the host.
	HostUID int `json:"host_uid,omitempty"`
	HostGID int `json:"host_gid,omitempty"`
}

// MountKind says what a Mount makes.
type MountKind string

// Kinds of Mount.
const (
	KindBind    MountKind = "bind"    // Source (host path) at Target
	KindTmpfs   MountKind = "tmpfs"   // a tmpfs with Options at Target
	KindProc    MountKind = "proc"    // the PID namespace's /proc at Target
	KindSymlink MountKind = "symlink" // a symbolic link at Target pointing to Source
	KindDir     MountKind = "dir"     // an empty directory at Target
)

// Mount is one step in building the sandbox's root. Targets are absolute
// paths inside the sandbox; their missing parents are created as directories.
type Mount struct {
	Kind   MountKind `json:"kind"`
	Source string    `json:"source,omitempty"`
	Target string    `json:"target"`
	// Writable binds stay writable; others are read-only.
	Writable bool `json:"rw,omitempty"`
	// Device binds a device node: the mount keeps device access and loses exec.
	Device bool `json:"dev,omitempty"`
	// Options of a tmpfs ("size=67108864,mode=1777").
	Options string `json:"options,omitempty"`
}

// Command returns the command that runs argv (argv[0] is the program's
// absolute path inside the sandbox) as spec says. The caller sets its
// output, process group and parent-death signal, and starts it; its Process
// is argv's process once the setup is done (the same pid). argv appears
// verbatim in the helper's command line too, so a process can be recognised
// by its arguments before and after the exec.
func Command(spec Spec, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		return nil, fmt.Errorf("sandbox: the command %q must be an absolute path", argv)
	}
	if iso := spec.Isolate; iso != nil {
		if iso.UID <= 0 || iso.GID <= 0 {
			return nil, fmt.Errorf("sandbox: uid %d and gid %d must be unprivileged (not 0)", iso.UID, iso.GID)
		}
		if iso.HostUID < 0 || iso.HostGID < 0 || (iso.HostUID == 0) != (iso.HostGID == 0) {
			return nil, fmt.Errorf("sandbox: host uid %d and gid %d must both be set (positive) or neither", iso.HostUID, iso.HostGID)
		}
		if !filepath.IsAbs(iso.Root) {
			return nil, fmt.Errorf("sandbox: root %q must be an absolute path", iso.Root)
		}
	}
	if iso := spec.Isolate; iso != nil && iso.HostUID > 0 && usernsBuilt {
		mounts, err := withSelf(slices.Clone(iso.Mounts))
		if err != nil {
			return nil, fmt.Errorf("sandbox: the helper's own files: %w", err)
		}
		isoCopy := *iso
		isoCopy.Mounts = mounts
		spec.Isolate = &isoCopy
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append([]string{initName, string(data), argSep}, argv...),
		// The helper needs no environment; this one keeps the engine's
		// out of sight (/proc/<pid>/environ) during the setup too.
		Env:         spec.Env,
		SysProcAttr: &syscall.SysProcAttr{},
	}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	if spec.Isolate != nil {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		if !spec.Isolate.Network {
			cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		}
	}
	return cmd, nil
}

// Check tells whether sandboxes can be created here: it runs the full setup
// of a minimal sandbox rooted on an empty directory made in dir, as uid/gid,
// and returns an error carrying the helper's complaint if it fails.
func Check(dir string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("sandbox: creating namespaces and mounts needs root; the engine runs as uid %d", os.Geteuid())
	}
	// A helper killed by a signal, with nothing said, tells nothing about
	// sandboxes (a loaded test machine shows it now and then): only
	// a setup that fails the same way three times in a row counts.
	var err error
	for range checkAttempts {
		var signaled bool
		if signaled, err = checkOnce(dir, uid, gid); err == nil || !signaled {
			return err
		}
	}
	return err
}

const checkAttempts = 3

// checkOnce runs one check; signaled tells that the helper died by a signal
// without a word.
func checkOnce(dir string, uid, gid int) (signaled bool, err error) {
	root, err := os.MkdirTemp(dir, ".sandbox-check-")
	if err != nil {
		return false, fmt.Errorf("sandbox: %w", err)
	}
	defer os.Remove(root)
	// The worker's own user namespace included (uid and gid mapped to
	// themselves here): it needs unprivileged user namespaces.
	spec := Spec{
		Check: true, Dir: "/tmp",
		Isolate: &Isolation{Root: root, UID: uid, GID: gid, HostUID: uid, HostGID: gid, Mounts: SystemMounts(1<<20, "")},
	}
	cmd, err := Command(spec, []string{"/nonexistent"})
	if err != nil {
		return false, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The helper arms a parent-death signal, which the kernel ties to the
	// thread that forked it: keep that thread to this goroutine (and
	// alive) until the helper has exited.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Run(); err != nil {
		said := strings.TrimSpace(out.String())
		var ee *exec.ExitError // ExitCode is -1 when a signal ended it
		signaled = errors.As(err, &ee) && ee.ExitCode() == -1 && said == ""
		return signaled, fmt.Errorf("sandbox: test sandbox failed (%v): %s", err, said)
	}
	return false, nil
}

// Layout collects host paths to show read-only inside a sandbox at the
// same place. Symbolic links on the way are recreated, so that on a
// merged-/usr system /lib64/ld-linux-x86-64.so.2 works through its links
// while only the real files are bound. The zero Layout is empty.
type Layout struct {
	binds map[string]bool   // host path without symlinks → is a directory
	links map[string]string // link path → its target, verbatim
}

// maxLinks bounds symbolic links followed for one path, as the kernel does.
const maxLinks = 40

// Expose adds the host path p (absolute), following symbolic links. A
// missing path is an error wrapping fs.ErrNotExist.
func (l *Layout) Expose(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("sandbox: expose %q: not an absolute path", p)
	}
	if l.binds == nil {
		l.binds, l.links = map[string]bool{}, map[string]string{}
	}
	return l.expose(filepath.Clean(p), 0)
}

func (l *Layout) expose(p string, links int) error {
	if links > maxLinks {
		return fmt.Errorf("sandbox: expose %s: too many symbolic links", p)
	}
	cur := "/"
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, part := range parts {
		next := filepath.Join(cur, part)
		info, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("sandbox: expose %s: %w", p, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("sandbox: expose %s: %w", p, err)
			}
			l.links[next] = target
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return l.expose(filepath.Join(append([]string{target}, parts[i+1:]...)...), links+1)
		}
		if i == len(parts)-1 {
			l.binds[next] = info.IsDir()
			return nil
		}
		if !info.IsDir() {
			return fmt.Errorf("sandbox: expose %s: %s is not a directory", p, next)
		}
		cur = next
	}
	l.binds["/"] = true // p was "/"
	return nil
}

// Mounts returns the read-only binds and links that show the exposed paths:
// binds of directories hide what lies below them, so paths under another
// bound directory are left out.
func (l *Layout) Mounts() []Mount {
	paths := make([]string, 0, len(l.binds))
	for p := range l.binds {
		paths = append(paths, p)
	}
	slices.Sort(paths) // a directory sorts before what it contains
	var out []Mount
	var dirs []string
	under := func(p string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	for _, p := range paths {
		if under(p) {
			continue
		}
		out = append(out, Mount{Kind: KindBind, Source: p, Target: p})
		if l.binds[p] {
			dirs = append(dirs, p)
		}
	}
	links := make([]string, 0, len(l.links))
	for p := range l.links {
		links = append(links, p)
	}
	slices.Sort(links)
	for _, p := range links {
		if !under(p) {
			out = append(out, Mount{Kind: KindSymlink, Source: l.links[p], Target: p})
		}
	}
	return out
}

// devices are the device nodes a sandbox gets.
var devices = []string{"null", "zero", "random", "urandom"}

// SystemMounts returns the mounts every sandbox has besides the runtime: /proc,
// /dev and a private /tmp of tmpSize bytes. shm, if set, is where /dev/shm
// points (POSIX semaphores of multiprocessing live there).
func SystemMounts(tmpSize int64, shm string) []Mount {
	ms := []Mount{
		{Kind: KindProc, Target: "/proc"},
		{Kind: KindTmpfs, Target: "/tmp", Options: fmt.Sprintf("size=%d,mode=1777", tmpSize)},
		{Kind: KindDir, Target: "/dev"},
	}
	for _, d := range devices {
		ms = append(ms, Mount{Kind: KindBind, Source: "/dev/" + d, Target: "/dev/" + d, Writable: true, Device: true})
	}
	ms = append(ms,
		Mount{Kind: KindSymlink, Source: "/proc/self/fd", Target: "/dev/fd"},
		Mount{Kind: KindSymlink, Source: "/proc/self/fd/0", Target: "/dev/stdin"},
		Mount{Kind: KindSymlink, Source: "/proc/self/fd/1", Target: "/dev/stdout"},
		Mount{Kind: KindSymlink, Source: "/proc/self/fd/2", Target: "/dev/stderr"},
	)
	if shm != "" {
		ms = append(ms, Mount{Kind: KindSymlink, Source: shm, Target: "/dev/shm"})
	}
	return ms
}
