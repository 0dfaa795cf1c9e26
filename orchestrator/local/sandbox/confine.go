package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Confinement of one execution process, for runtimes that cannot confine
// their own execution processes (Node.js: it can neither create namespaces
// nor install a seccomp filter). A worker's server starts the binary that
// started the worker (visible inside the sandbox at the path the
// orchestrator binds it to) with argv[0] ConfineName:
//
//	qinling-confine --tmp-size BYTES [--hide DIR] [--keep DIR]... -- /usr/bin/node ARGS...
//
// In two halves, because a user namespace can only be created by a
// single-threaded process and the Go runtime starts threads before any Go
// code runs: a C constructor (confine_cgo.go) creates new user (mapping the
// caller's uid and gid to themselves), mount, PID and IPC namespaces and
// forks; the process it started stays as a waiter that exits as the child
// does. The child, PID 1 of the new PID namespace, then runs confineMain,
// which:
//   - starts a new session (kill(0, ...) reaches nothing outside);
//   - mounts a fresh tmpfs of --tmp-size bytes on /tmp (its working
//     directory, and TMPDIR is /tmp), first binding each --keep there again
//     if it lies below /tmp (an unsandboxed worker's package directory and
//     the server's own);
//   - mounts a /proc of the new PID namespace, so that it sees only its own
//     processes, and an empty read-only tmpfs on --hide (the server's socket
//     directory);
//   - drops every capability the user namespace gave (bounding set
//     included), sets no_new_privs, installs the seccomp filter of
//     SeccompProgram (what the Python runtime's execution processes install,
//     on top of the worker's, seccomp.go);
//   - execs the command, which is PID 1 of its namespace: killing it kills
//     everything it started.
//
// Its siblings (other execution processes, the ones prepared for the next
// calls) and the server are in the parent PID namespace: it cannot name them,
// so it can neither signal nor trace them, nor read their /proc files.
const ConfineName = "qinling-confine"

// ConfineAvailable tells whether this binary can serve as the confinement
// helper: it needs cgo (the C half) and a seccomp filter for the architecture.
func ConfineAvailable() bool {
	return confineBuilt && nativeArch != nil
}

// confineMain is the Go half of the helper; it returns only on failure,
// with the exit status to use.
func confineMain(args []string) int {
	opts, argv, err := parseConfine(args)
	if err != nil {
		return confineFail(ExitSetup, err)
	}
	if !confineBuilt || os.Getpid() != 1 {
		return confineFail(ExitSetup, errors.New("not in a PID namespace of its own: the binary was built without cgo"))
	}
	if err := confine(opts); err != nil {
		return confineFail(ExitSetup, err)
	}
	err = syscall.Exec(argv[0], argv, os.Environ())
	return confineFail(ExitExec, fmt.Errorf("exec %s: %w", argv[0], err))
}

func confineFail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "%s: %v\n", ConfineName, err)
	return code
}

type confineOpts struct {
	tmpSize int64
	hide    string
	keep    []string
}

func parseConfine(args []string) (confineOpts, []string, error) {
	var o confineOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == argSep {
			argv := args[i+1:]
			if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
				return o, nil, fmt.Errorf("the command %q must be an absolute path", argv)
			}
			if o.tmpSize <= 0 {
				return o, nil, errors.New("--tmp-size is required")
			}
			return o, argv, nil
		}
		if i+1 >= len(args) {
			return o, nil, fmt.Errorf("option %s needs a value", a)
		}
		v := args[i+1]
		i++
		switch a {
		case "--tmp-size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return o, nil, fmt.Errorf("--tmp-size %q: not a positive number of bytes", v)
			}
			o.tmpSize = n
		case "--hide":
			o.hide = v
		case "--keep":
			o.keep = append(o.keep, v)
		default:
			return o, nil, fmt.Errorf("unknown option %s", a)
		}
	}
	return o, nil, errors.New("no command (-- /path/to/program ...)")
}

// confine does what the package comment says, in this process and on this
// thread (the one that execs: capabilities, no_new_privs and the seccomp
// filter are per thread).
func confine(o confineOpts) error {
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	// Nothing mounted here may propagate anywhere else.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// Directories below /tmp that must stay (an unsandboxed worker's
	// package and server directories), held open across the new tmpfs.
	type kept struct {
		path string
		fd   int
	}
	var keep []kept
	for _, k := range o.keep {
		if !strings.HasPrefix(filepath.Clean(k)+"/", "/tmp/") {
			continue
		}
		if fd, err := unix.Open(k, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			keep = append(keep, kept{k, fd})
		}
	}
	opts := "size=" + strconv.FormatInt(o.tmpSize, 10) + ",mode=1777"
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	for _, k := range keep {
		if err := os.MkdirAll(k.path, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(k.fd), k.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("keep %s: %w", k.path, err)
		}
		unix.Close(k.fd)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc of the new PID namespace: %w", err)
	}
	if o.hide != "" {
		if info, err := os.Stat(o.hide); err == nil && info.IsDir() {
			if err := unix.Mount("tmpfs", o.hide, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "size=4096,mode=0555"); err != nil {
				return fmt.Errorf("hide %s: %w", o.hide, err)
			}
		}
	}
	if err := os.Chdir("/tmp"); err != nil {
		return err
	}
	if err := dropNamespaceCaps(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	prog, err := SeccompProgram(nil)
	if err != nil {
		return err
	}
	return installSeccomp(prog)
}

// dropNamespaceCaps drops what the new user namespace gave: the bounding
// set (so that not even a uid 0 inside gets any back at exec), the ambient,
// inheritable, permitted and effective sets.
func dropNamespaceCaps() error {
	last := 63
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}
