package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// init takes over the process when it is a re-executed sandbox helper (see
// the package comment); otherwise it does nothing. Doing it in init rather
// than from main skips the initialisation of every package imported after
// this one, and needs no hook in each binary and test binary.
func init() {
	if len(os.Args) > 0 && os.Args[0] == ConfineName {
		// The C half has run (confine_cgo.go); the filter and capabilities
		// are set on the thread that execs.
		runtime.LockOSThread()
		os.Exit(confineMain(os.Args[1:]))
	}
	if len(os.Args) < 4 || os.Args[0] != initName || os.Args[2] != argSep {
		return
	}
	// Thread-scoped state (no_new_privs, the capability sets, the
	// parent-death signal) must be set on the thread that calls execve.
	runtime.LockOSThread()
	os.Exit(helperMain(os.Args[1], os.Args[3:]))
}

// helperMain sets up the sandbox described by specJSON and execs argv. It
// returns only on failure, with the exit status to use.
func helperMain(specJSON string, argv []string) int {
	var spec Spec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fail(ExitSetup, fmt.Errorf("bad spec: %w", err))
	}
	for _, procs := range spec.Cgroups {
		// "0" is the writer itself, whatever PID namespace it is in.
		if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
			fmt.Fprintf(os.Stderr, "%s: warning: cannot join cgroup %s: %v\n", initName, filepath.Dir(procs), err)
		}
	}
	if iso := spec.Isolate; iso != nil {
		if err := isolate(iso, len(spec.Cgroups) > 0); err != nil {
			return fail(ExitSetup, err)
		}
	}
	for _, rl := range spec.Rlimits {
		lim := unix.Rlimit{Cur: rl.Value, Max: rl.Value}
		if err := unix.Setrlimit(rl.Resource, &lim); err != nil {
			return fail(ExitSetup, fmt.Errorf("setrlimit %d: %w", rl.Resource, err))
		}
	}
	iso := spec.Isolate
	if iso != nil {
		uid, gid := iso.UID, iso.GID
		if iso.HostUID > 0 {
			uid, gid = iso.HostUID, iso.HostGID
		}
		if err := dropPrivileges(uid, gid); err != nil {
			return fail(ExitSetup, err)
		}
	} else if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(ExitSetup, fmt.Errorf("no_new_privs: %w", err))
	}
	if spec.Dir != "" {
		if err := os.Chdir(spec.Dir); err != nil {
			return fail(ExitSetup, err)
		}
	}
	if WorkerSeccompAvailable() {
		prog, err := WorkerSeccompProgram()
		if err == nil {
			err = installSeccomp(prog)
		}
		if err != nil {
			return fail(ExitSetup, err)
		}
	}
	if iso != nil && iso.HostUID > 0 && usernsBuilt {
		// The last step, in a single-threaded process (userns_cgo.go).
		args := []string{usernsName, strconv.Itoa(iso.UID), strconv.Itoa(iso.GID), argSep}
		if spec.Check {
			args[3] = "--check"
		}
		err := syscall.Exec("/proc/self/exe", append(args, argv...), spec.Env)
		return fail(ExitSetup, fmt.Errorf("exec %s: %w", usernsName, err))
	}
	if spec.Check {
		return 0
	}
	err := syscall.Exec(argv[0], argv, spec.Env)
	return fail(ExitExec, fmt.Errorf("exec %s: %w", argv[0], err))
}

// usernsName is argv[0] of the helper's last step (userns_cgo.go).
const usernsName = "qinling-userns"

func fail(code int, err error) int {
	fmt.Fprintf(os.Stderr, "%s: %v\n", initName, err)
	return code
}

// isolate builds the new root and switches to it, then finishes the UTS,
// network and cgroup namespaces. It runs as root in the namespaces the
// parent created (Command's Cloneflags).
func isolate(iso *Isolation, inCgroup bool) error {
	if inCgroup {
		// The command sees its own cgroup as "/", not the host's layout.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("new cgroup namespace: %w", err)
		}
	}
	// Nothing mounted from here on may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := iso.Root
	if err := unix.Mount("qinling", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m,nr_inodes=4096"); err != nil {
		return fmt.Errorf("mount root tmpfs on %s: %w", root, err)
	}
	for _, m := range iso.Mounts {
		if err := mountOne(root, m); err != nil {
			return fmt.Errorf("%s %s: %w", m.Kind, m.Target, err)
		}
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching it
	// leaves only the new tree (runc's trick, no directory for the old root).
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the root read-only: %w", err)
	}
	if iso.Hostname != "" {
		if err := unix.Sethostname([]byte(iso.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if !iso.Network {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring up lo: %w", err)
		}
	}
	return nil
}

// mountOne performs one Mount below root.
func mountOne(root string, m Mount) error {
	if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) != m.Target {
		return errors.New("target must be a clean absolute path")
	}
	target := filepath.Join(root, m.Target)
	if err := mkdirUnder(root, filepath.Dir(m.Target)); err != nil {
		return err
	}
	switch m.Kind {
	case KindDir:
		return mkdirUnder(root, m.Target)
	case KindSymlink:
		return os.Symlink(m.Source, target)
	case KindTmpfs:
		if err := mkdirUnder(root, m.Target); err != nil {
			return err
		}
		return unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, m.Options)
	case KindProc:
		if err := mkdirUnder(root, m.Target); err != nil {
			return err
		}
		return unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	case KindBind:
		info, err := os.Stat(m.Source)
		if err != nil {
			return err
		}
		if info.IsDir() {
			err = mkdirUnder(root, m.Target)
		} else {
			err = createFile(target)
		}
		if err != nil {
			return err
		}
		if err := unix.Mount(m.Source, target, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
		if m.Device {
			flags |= unix.MS_NOEXEC
		} else {
			flags |= unix.MS_NODEV
		}
		if !m.Writable {
			flags |= unix.MS_RDONLY
		}
		return unix.Mount("", target, "", flags, "")
	}
	return fmt.Errorf("unknown mount kind %q", m.Kind)
}

// mkdirUnder creates the directory dir (absolute, inside the sandbox) and its
// parents below root. It refuses to go through anything but a directory, so
// a symbolic link created earlier cannot lead it out of the new root.
func mkdirUnder(root, dir string) error {
	cur := root
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		err := unix.Mkdir(cur, 0o755)
		if err == nil || !errors.Is(err, unix.EEXIST) {
			if err != nil {
				return fmt.Errorf("mkdir %s: %w", cur, err)
			}
			continue
		}
		info, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		if !info.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", strings.TrimPrefix(cur, root))
		}
	}
	return nil
}

func createFile(path string) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create mount point %s: %w", path, err)
	}
	return unix.Close(fd)
}

// loopbackUp sets IFF_UP on lo, the only interface of a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// dropPrivileges empties the capability bounding set, switches to uid/gid
// with no supplementary groups (which clears the permitted and effective
// capabilities), clears the inheritable ones, sets no_new_privs, and re-arms
// the parent-death signal that the uid change cleared.
func dropPrivileges(uid, gid int) error {
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
	// The syscall package's versions apply to every thread of the process.
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %w", err)
	}
	if parentGone() {
		return errors.New("the engine exited during the setup")
	}
	return nil
}

// parentGone tells whether the engine died before the parent-death signal
// was re-armed. getppid cannot tell (the parent is outside the PID
// namespace), but the engine holds the read end of our output pipe: once it
// is gone, the write end polls as an error.
func parentGone() bool {
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return false
	}
	fds := []unix.PollFd{{Fd: 2}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLERR != 0
}
