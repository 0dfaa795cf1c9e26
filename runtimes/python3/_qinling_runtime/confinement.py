"""Strict isolation: what an execution process does to itself before it
gets its request (a private /tmp, a seccomp filter protecting the worker's
own processes, its own session), prepared once per zygote."""

import os
import signal

from . import config

# Linux constants (the same on x86_64 and aarch64).
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_SLAVE = 1, 2, 4, 8, 0x1000, 0x4000, 0x80000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 36, 38
SECCOMP_MODE_FILTER, SECCOMP_RET_ALLOW, SECCOMP_RET_EPERM = 2, 0x7FFF0000, 0x00050001
F_SETOWN, F_SETOWN_EX, FIOSETOWN, SIOCSPGRP = 8, 15, 0x8901, 0x8902

# Per architecture: audit arch, first x32 syscall number (None: no such ABI),
# syscall numbers the seccomp filter looks at.
_SYSCALLS = {
    "x86_64": (0xC000003E, 0x40000000, dict(
        kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129, rt_tgsigqueueinfo=297, ptrace=101,
        process_vm_readv=310, process_vm_writev=311, fcntl=72, ioctl=16)),
    "aarch64": (0xC00000B7, None, dict(
        kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, ptrace=117,
        process_vm_readv=270, process_vm_writev=271, fcntl=25, ioctl=29)),
}
_SYSCALLS_COMMON = dict(pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438)


def seccomp_program(protect):
    """A classic-BPF seccomp program (list of (code, jt, jf, k)) that denies,
    with EPERM, every way to signal, trace or read the memory of the processes
    in protect (and of their process groups, and kill(-1)): the worker's own
    server and zygotes. Signals to any other process, the execution's own
    children included, are allowed. None on an unknown architecture."""
    arch = _SYSCALLS.get(os.uname().machine)
    if arch is None:
        return None
    audit, x32, nr = arch
    nr = dict(nr, **_SYSCALLS_COMMON)
    pids = sorted({p & 0xFFFFFFFF for pid in protect for p in (pid, -pid)} | {0xFFFFFFFF})
    LD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06     # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE|K, BPF_RET|K
    prog, labels = [], {}

    def emit(code, k, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    def arg(i):   # offset of the low 32 bits of args[i] in struct seccomp_data
        return 16 + 8 * i

    emit(LD, 4)                                    # arch
    emit(JEQ, audit, 0, "deny")                    # another ABI (int 0x80): nothing
    emit(LD, 0)                                    # syscall number
    if x32 is not None:
        emit(JGE, x32, "deny", 0)
    for name in ("tkill", "ptrace", "process_vm_readv", "process_vm_writev",
                 "pidfd_send_signal", "pidfd_getfd"):
        emit(JEQ, nr[name], "deny", 0)
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open"):
        emit(JEQ, nr[name], "pid", 0)
    emit(JEQ, nr["fcntl"], "fcntl", 0)
    emit(JEQ, nr["ioctl"], "ioctl", 0)
    emit(RET, SECCOMP_RET_ALLOW)
    labels["pid"] = len(prog)                      # first argument is a pid
    emit(LD, arg(0))
    for p in pids:
        emit(JEQ, p, "deny", 0)
    emit(RET, SECCOMP_RET_ALLOW)
    labels["fcntl"] = len(prog)                    # F_SETOWN: SIGIO to a pid
    emit(LD, arg(1))
    emit(JEQ, F_SETOWN_EX, "deny", 0)
    emit(JEQ, F_SETOWN, 0, "allow")
    emit(LD, arg(2))
    for p in pids:
        emit(JEQ, p, "deny", 0)
    labels["allow"] = len(prog)
    emit(RET, SECCOMP_RET_ALLOW)
    labels["ioctl"] = len(prog)
    emit(LD, arg(1))
    emit(JEQ, FIOSETOWN, "deny", 0)
    emit(JEQ, SIOCSPGRP, "deny", 0)
    emit(RET, SECCOMP_RET_ALLOW)
    labels["deny"] = len(prog)
    emit(RET, SECCOMP_RET_EPERM)
    for i, ins in enumerate(prog):
        for j in (1, 2):
            if isinstance(ins[j], str):
                ins[j] = labels[ins[j]] - i - 1
    return [tuple(ins) for ins in prog]


class Confinement:
    """What an execution process does to itself before it gets its request,
    prepared once per zygote (ctypes, the seccomp program) so that each
    forked process only makes the system calls:

    * a private /tmp: new mount namespace (inside a new user namespace that
      maps only its own uid and gid, unless it may mount already) with a
      fresh tmpfs on /tmp, the server's socket directory hidden, and the
      working directory moved there; capabilities gained in that user
      namespace are dropped again;
    * a seccomp filter protecting the server and the zygotes (protect).
    """

    def __init__(self, tmp_size, hide, protect, cpu_procs=None):
        import ctypes
        import mmap   # noqa: F401 -- for SharedLog: imported here, before the zygote forks
        self.ct = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.libc = libc
        self.tmp_opts = ("size=%d,mode=1777" % tmp_size).encode()
        self.hide = os.fsencode(hide) if hide else None
        self.cpu_procs = os.fsencode(cpu_procs) if cpu_procs else None
        self.uid, self.gid = os.getuid(), os.getgid()
        # Everything a forked process needs, built here once: each object
        # made in the child would cost it page faults.
        self.maps = ((b"/proc/self/setgroups", b"deny"), (b"/proc/self/gid_map", b"%d %d 1" % (self.gid, self.gid)),
                     (b"/proc/self/uid_map", b"%d %d 1" % (self.uid, self.uid)))
        self.cap_header = (ctypes.c_uint32 * 2)(0x20080522, 0)   # _LINUX_CAPABILITY_VERSION_3, this process
        self.cap_data = (ctypes.c_uint32 * 6)()                   # effective, permitted, inheritable x 2: none
        # Set in a function zygote, for the execution processes it forks
        # (each step is one fewer per execution: see where they are set):
        self.filtered = False   # the filter it runs under protects all of protected already
        self.hidden = False     # its mount namespace, in a user namespace of its own, hides the socket
        self.protect(protect)

    def protect(self, pids):
        """Sets the processes the seccomp filter protects."""
        ct = self.ct
        self.protected = list(pids)
        prog = seccomp_program(self.protected)
        self.fprog = None
        if prog is None:
            return

        class SockFilter(ct.Structure):
            _fields_ = [("code", ct.c_ushort), ("jt", ct.c_ubyte), ("jf", ct.c_ubyte), ("k", ct.c_uint32)]

        class SockFprog(ct.Structure):
            _fields_ = [("len", ct.c_ushort), ("filter", ct.POINTER(SockFilter))]

        self.filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
        self.fprog = SockFprog(len(prog), self.filters)

    def compact(self):
        """Called in a zygote before it forks anything: hands free memory back
        to the system (fewer pages for each fork to copy and each exit to
        tear down), then freezes the collector, which in a forked process
        then leaves (and so does not copy) what it inherited. (No collection
        first: it would write to, and so copy, every page with objects.)"""
        import gc
        try:
            self.libc.malloc_trim(0)
        except AttributeError:   # not glibc
            pass
        gc.freeze()

    def _call(self, rc, what):
        if rc != 0:
            err = self.ct.get_errno()
            raise OSError(err, "%s: %s" % (what, os.strerror(err)))

    def prctl(self, option, arg=0, what="prctl"):
        self._call(self.libc.prctl(option, arg, 0, 0, 0), what)

    def private_tmp(self):
        libc = self.libc
        userns = False
        if libc.unshare(CLONE_NEWNS) != 0:   # only root may: everyone else needs a user namespace
            self._call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "new user and mount namespaces")
            userns = True
            for path, data in self.maps:
                write_file(path, data)
        # Nothing mounted here may propagate anywhere else. In a new user
        # namespace the kernel has made every copied mount a slave already
        # (copy_mnt_ns: CL_SHARED_TO_SLAVE for a less privileged namespace),
        # so mounts here can receive propagation but never send it: the
        # remount, a walk over the whole tree, is only needed without one.
        if not userns:
            self._call(libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None), "make mounts private")
        keep = None   # an unsandboxed worker's packages may live under /tmp: keep them in view
        if (config.PACKAGES_DIR + os.sep).startswith("/tmp" + os.sep) and os.path.isdir(config.PACKAGES_DIR):
            keep = os.open(config.PACKAGES_DIR, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._call(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, self.tmp_opts), "mount /tmp")
        if keep is not None:
            os.makedirs(config.PACKAGES_DIR)
            self._call(libc.mount(b"/proc/self/fd/%d" % keep, os.fsencode(config.PACKAGES_DIR), None, MS_BIND | MS_REC, None),
                       "keep the packages directory")
            os.close(keep)
        # The socket directory is hidden by a read-only tmpfs over it, unless
        # the namespace this one was copied from hid it already and this one
        # has a user namespace of its own (a function zygote's execution
        # processes): the kernel then locks every copied mount (lock_mnt_tree),
        # so not even a process with every capability in the new user
        # namespace could unmount that tmpfs, or move it, to uncover what is
        # below (EINVAL); and an execution drops those capabilities below.
        if self.hide and not (userns and self.hidden) and os.path.isdir(self.hide):   # not gone with the old /tmp
            self._call(libc.mount(b"tmpfs", self.hide, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                                  b"size=4096,mode=0555"), "hide the server's socket")
        os.chdir("/tmp")
        if userns:
            self.drop_capabilities()
        self.hidden = userns   # for what this process forks

    def drop_capabilities(self):
        """Drops what the new user namespace gave. With no_new_privs set and an
        unprivileged uid inside, nothing can bring capabilities back (the
        ambient set of a new user namespace is empty)."""
        ct = self.ct
        self._call(self.libc.capset(ct.addressof(self.cap_header), ct.addressof(self.cap_data)), "drop capabilities")

    def join_cpu(self):
        """Moves this process into the cpu group of executions, where the
        function's cpu limit applies (what it did before, preparing itself,
        is the worker's overhead)."""
        if self.cpu_procs:
            write_file(self.cpu_procs, b"0")

    def apply_seccomp(self):
        """Installs the filter protecting self.protected, unless this process
        inherited one that does (filtered: a function zygote's, which
        protects itself too; filters are inherited across fork and can
        never be removed)."""
        if self.fprog is None or self.filtered:
            return
        self.prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        self._call(self.libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self.ct.addressof(self.fprog), 0, 0),
                   "install the seccomp filter")


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def close_fds(keep):
    """Closes every descriptor above 2 not in keep (close_range): an
    execution must not hold the server's sockets, another execution's
    channel or a zygote's."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def child_signals():
    """A zygote handles SIGCHLD (to reap and report); everything else it
    forks gets the default back."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def confine(conf, keep):
    """Makes this freshly forked (or executed) process an execution process."""
    os.setsid()   # its own session and process group, killed as a whole afterwards
    conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    conf.prctl(PR_SET_CHILD_SUBREAPER, 1)   # orphans of what it starts stay below it
    conf.prctl(PR_SET_DUMPABLE, 1)          # to write its own uid_map and oom_score_adj
    try:   # the memory limit's OOM killer takes an execution before the worker
        write_file(b"/proc/self/oom_score_adj", b"1000")
    except OSError:
        pass
    conf.private_tmp()
    conf.apply_seccomp()
    conf.prctl(PR_SET_DUMPABLE, 0)          # no ptrace, no /proc/<pid>/mem for its siblings
    close_fds(keep)
