"""Strict isolation: the zygotes, single-threaded processes forked before the
server starts any thread, which fork execution processes on request (and,
for the runtime zygote, function zygotes that have a function's module
imported)."""

import json
import os
import signal
import socket
import struct
import sys
import threading

from . import execution, process
from .compat import text_of
from .confinement import (PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, child_signals, close_fds,
                          write_file)
from .execution import EntryError, Job, resolve
from .process import process_main

def _fork(fds, body):
    """Forks a child running body(); the parent closes fds (passed to it)."""
    try:
        pid = os.fork()
    except OSError as e:   # the pids limit: the server sees the channel close
        sys.__stderr__.write("zygote: fork: %s\n" % e)
        pid = -1
    if pid == 0:
        try:
            body()
        except BaseException:
            import traceback
            traceback.print_exc(file=sys.__stderr__)
        finally:
            os._exit(70)
    for fd in fds:
        os.close(fd)
    return pid


def _background(conf):
    """Lowers the priority (nice 19) of this zygote and of what it forks,
    when execution processes have a cpu cgroup of their own: preparing them
    then yields the CPU to the worker's server within the worker's cgroup,
    while an execution, alone in its cgroup, is scheduled by that cgroup's
    weight, which nice does not change."""
    if conf.cpu_procs:
        try:
            os.nice(19 - os.nice(0))
        except OSError:
            pass


def zygote_loop(ctl, conf, ancestors, functions):
    """Body of a zygote: on the server's request forks an execution process
    (b"F", with its channel and log memory file) or, for the runtime zygote,
    a function zygote (b"L"); reaps them and reports each exit (b"X"). It
    stays single-threaded, so that forking it is safe. Never returns."""
    me = os.getpid()
    conf.protect(ancestors + [me])
    _background(conf)

    def reap(*_):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                ctl.send(b"X" + struct.pack("<ii", pid, status))
            except OSError:
                pass
    signal.signal(signal.SIGCHLD, reap)
    if functions:   # the runtime zygote (a function zygote did it before its checks)
        process.prewarm()
    conf.compact()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 65536, 4)
        except OSError:
            msg, fds = b"", []
        if not msg:   # the server is gone
            os._exit(0)
        op = msg[:1]
        if op == b"F" and len(fds) == 2:
            _fork(fds, lambda: process_main(fds[0], fds[1], conf, ctl, warm=True))
        elif op == b"E" and len(fds) == 2 and functions:
            argv = json.loads(msg[1:])
            _fork(fds, lambda: _exec_fresh(fds[0], fds[1], argv))
        elif op == b"L" and len(fds) == 1 and functions:
            spec = json.loads(msg[1:])
            _fork(fds, lambda: _function_zygote(fds[0], spec, conf, ancestors + [me], ctl))
        else:
            for fd in fds:
                os.close(fd)


def _exec_fresh(chan_fd, log_fd, argv):
    """Child of the runtime zygote that becomes a fresh interpreter for one
    execution (level none), with its channel and log on descriptors 3 and 4."""
    child_signals()
    try:   # before the new interpreter allocates anything
        write_file(b"/proc/self/oom_score_adj", b"1000")
    except OSError:
        pass
    for fd, target in ((chan_fd, 3), (log_fd, 4)):
        if fd != target:
            os.dup2(fd, target)
        os.set_inheritable(target, True)
    os.execv(argv[0], argv)


def _function_zygote(ctl_fd, spec, conf, protect, parent_ctl):
    """Body of a function zygote, forked from the runtime zygote: confined as
    an execution process is (its own session, a fresh /tmp in its own user
    and mount namespaces, the seccomp filter protecting the worker's
    processes, no descriptor but its channel: the function's code runs now),
    it imports the function's module, kills whatever that left running,
    reports b"O" or b"E" + why, then forks execution processes that have it
    imported."""
    child_signals()
    os.close(parent_ctl.detach())
    ctl = socket.socket(fileno=ctl_fd)
    ctl.send(b"P" + struct.pack("<i", os.getpid()))
    os.setsid()
    conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    conf.prctl(PR_SET_CHILD_SUBREAPER, 1)   # what the import starts stays below it, to be killed
    conf.prctl(PR_SET_DUMPABLE, 1)
    try:   # it runs the module's code: the OOM killer may take it before the server
        write_file(b"/proc/self/oom_score_adj", b"500")
    except OSError:
        pass
    try:
        conf.private_tmp()
    except OSError as e:
        ctl.send(b"E" + ("cannot confine the function zygote: %s" % e).encode("utf-8", "replace"))
        os._exit(0)
    conf.prctl(PR_SET_DUMPABLE, 0)
    # The filter protects this zygote itself as well: the execution
    # processes it forks inherit it and install none of their own (one
    # fewer filter to build, and to run on each of their system calls). It
    # costs nothing here: this zygote never signals, traces or reads
    # itself (it kills only its children), and the function's module,
    # imported below, runs in this process anyway.
    conf.protect(protect + [os.getpid()])
    conf.apply_seccomp()
    conf.filtered = conf.fprog is not None
    close_fds({ctl_fd})
    execution.reset_after_fork()
    fid, version, entry = spec["function_id"], spec["function_version"], spec["entry"]
    job = Job("preload", fid, version, entry, (), {}, 1)
    err = None
    try:
        resolve(job)
        try:   # before the checks below: what the module patched in the runtime may run here
            process.prewarm()
        except Exception:   # only an optimisation; executions report what breaks
            pass
        if threading.active_count() > 1 or len(os.listdir("/proc/self/task")) > 1:
            err = ("importing it started threads, which a process forked from it would not have; "
                   "its module is imported in each execution instead")
    except EntryError as e:
        err = str(e)
    except BaseException as e:
        err = "%s: %s" % (type(e).__name__, text_of(e))
    if not _kill_children() and not err:
        err = "importing it started processes that could not all be killed"
    # Orphans of executions go to the server again, which kills them.
    conf.prctl(PR_SET_CHILD_SUBREAPER, 0)
    if err:
        ctl.send(b"E" + err.encode("utf-8", "replace")[:4000])
        os._exit(0)
    process.preloaded = (fid, version, entry)
    ctl.send(b"O")
    zygote_loop(ctl, conf, protect, functions=False)


def _kill_children(rounds=1000):
    """Kills and reaps every process below this one (a subreaper: orphans
    of what it started come back to it), until none is left: nothing the
    import started may meet an execution. False if some remain."""
    from .strict import _children_of   # loaded already: it imports this module
    me = os.getpid()
    for _ in range(rounds):
        pids = _children_of(me)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except (ChildProcessError, InterruptedError):
                pass
    return False
