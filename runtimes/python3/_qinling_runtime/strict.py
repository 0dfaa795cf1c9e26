"""Strict isolation, server side: forks the zygote, keeps execution processes
ready, hands each /execute to one and kills it with everything it started
once it has answered, and switches what is preloaded (/preload)."""

import _socket
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

from . import config
from .confinement import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, Confinement
from .execution import BadRequest, response_body, timeout_body
from .output import LOG_HEADER, read_shared_log
from .process import FRAME, READY, frame
from .zygote import zygote_loop

LEVELS = ("none", "runtime", "function")
PROCESS_WAIT = 10.0   # longest wait for an execution process before failing the call


class NoProcess(Exception):
    """No execution process could be had."""


class Zygote:
    def __init__(self, pid, ctl, key=None):
        self.pid, self.ctl, self.key = pid, ctl, key
        self.inflight = 0      # executions running in processes it forked
        self.retired = False   # replaced: stopped once inflight is 0


class Process:
    """The server's view of one execution process."""

    def __init__(self, chan, memfd, gen, zygote):
        self.chan, self.memfd, self.gen, self.zygote = chan, memfd, gen, zygote
        self.pid = None

    def close(self):
        for close in (self.chan.close, lambda: os.close(self.memfd)):
            try:
                close()
            except OSError:
                pass


def _new_channel():
    """A socketpair and a log memory file for one execution process. The
    _socket module's own socketpair: socket.socketpair wraps each end again,
    which costs a getsockname per end on every call."""
    chan, child = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    memfd = os.memfd_create("qinling-log", os.MFD_CLOEXEC)
    os.ftruncate(memfd, LOG_HEADER.size + config.MAX_LOG_BYTES)
    return chan, child, memfd


def _read_proc(path):
    """A /proc file's contents, b"" if it is gone: os-level open and read
    (open() adds an fstat, an ioctl, two lseeks and a read to find EOF; a
    seq_file read returns everything it has unless the buffer fills)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        out = chunk = os.read(fd, 65536)
        while len(chunk) == 65536:
            chunk = os.read(fd, 65536)
            out += chunk
        return out
    except OSError:
        return b""
    finally:
        os.close(fd)


_PROC_CHILDREN = None


def _children_of(pid):
    """Live children of pid, via /proc/<pid>/task/*/children (or a /proc
    scan). Only its main thread's list when /proc/<pid>/stat counts one
    thread: an execution process usually has no other (the task directory
    is listed otherwise)."""
    global _PROC_CHILDREN
    if _PROC_CHILDREN is None:   # once: the kernel's CONFIG_PROC_CHILDREN
        _PROC_CHILDREN = os.path.exists("/proc/self/task/%d/children" % os.getpid())
    if not _PROC_CHILDREN:
        return _children_by_scan(pid)
    stat = _read_proc("/proc/%d/stat" % pid)
    try:
        threads = int(stat[stat.rindex(b")") + 2:].split()[17])
    except (ValueError, IndexError):
        return []   # gone
    if threads == 1:
        return [int(p) for p in _read_proc("/proc/%d/task/%d/children" % (pid, pid)).split()]
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tasks:
        out += [int(p) for p in _read_proc("/proc/%d/task/%s/children" % (pid, tid)).split()]
    return out


def _children_by_scan(pid):
    """Children of pid by a /proc scan (a kernel without CONFIG_PROC_CHILDREN)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read_proc("/proc/%s/stat" % name)
            try:
                if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                    out.append(int(name))
            except (ValueError, IndexError):
                pass
    return out


def _kill_tree(pid):
    """SIGKILLs an execution process, its process group and its descendants
    (those that left the group are still below it: it is a subreaper).
    Returns how many processes the tree had."""
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += _children_of(p)
    n = len(seen)
    try:
        # Its group: it made it (setsid, before R) and, leading its
        # session, cannot leave it, so the group's kill is its own too.
        os.kill(-pid, signal.SIGKILL)
        seen.discard(pid)
    except OSError:
        pass
    for target in sorted(seen):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return n


def _describe_status(status):
    if status is None:
        return "its process ended without an answer"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return "its process was killed by signal %d (%s)" % (sig, name)
    return "its process exited with status %d before answering" % os.WEXITSTATUS(status)


class Strict:
    """Strict isolation, server side. The zygote is forked before any thread
    starts. Execution processes are asked of it (or of the function zygote)
    ahead of the calls, `spares` of them: by the call's thread once it has
    answered and killed its process, by the manager thread after a change
    of level or a failure, by a call that finds none; the call that takes
    one reads its b"R" (ready) itself. The manager thread watches the
    zygotes' control channels (exits, a zygote gone); a reaper thread reaps
    this process's children (it is PID 1 of the sandbox, or a subreaper); a
    cleaner thread kills processes that outlive their execution. Per call
    the server so wakes no thread besides the call's but the manager, once,
    for the exit report (docs/benchmarks.md, "The worker server's share")."""

    def __init__(self, spares, tmp_size, cpu_procs=None):
        self.spares = spares
        self.tmp_size = tmp_size
        self.cpu_procs = cpu_procs
        self.cond = threading.Condition()
        self.level = "runtime"
        self.gen = 0               # bumped when the level changes: older processes are stale
        self.ready = []            # Process objects asked for (their b"R" read once taken), oldest first
        self.pending = 0           # being asked for, not yet in ready
        self.error = None          # why the last execution process failed to start
        self.retry_at = 0.0
        self.backoff = 0.0
        self.exits = {}            # pid -> wait status, recent
        self.exit_order = []
        self.legit = set()         # this process's own children (not orphans)
        self.zygote = None
        self.fzygote = None
        self.source = None         # Zygote execution processes come from; None at level "none"
        self.inbox = []
        self.preload_lock = threading.Lock()
        self.send_lock = threading.Lock()   # a zygote's ctl is not closed while a thread sends on it
        self.cleaner = None

    # -- start

    def start(self, wait=PROCESS_WAIT):
        """Forks the zygote, starts the threads, and waits for the first
        execution process: NoProcess if none can be made here."""
        self.pid = os.getpid()
        sock_dir = os.path.dirname(config.SOCKET_PATH) if config.SOCKET_PATH else None
        if sock_dir and (config.PACKAGES_DIR + os.sep).startswith(sock_dir.rstrip(os.sep) + os.sep):
            sock_dir = None   # unsandboxed: the packages are next to the socket, keep them
        ancestors = [1] if self.pid == 1 else [1, self.pid]
        conf = Confinement(self.tmp_size, sock_dir, ancestors, self.cpu_procs)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()   # before any thread: the zygote is a clean single-threaded copy
        if pid == 0:
            try:
                a.close()
                if config.LISTEN_FD is not None:   # the engine's callers are the server's, never a zygote's
                    os.close(config.LISTEN_FD)
                conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                conf.prctl(PR_SET_DUMPABLE, 0)
                zygote_loop(b, conf, ancestors, functions=True)
            finally:
                os._exit(70)
        b.close()
        self.conf = conf
        conf.protect(ancestors + [pid])   # for fresh (executed) processes
        if conf.fprog is None:
            sys.__stderr__.write("strict isolation: no seccomp filter for %s: executions can signal the worker's "
                                 "own processes (a worker harmed that way is replaced)\n" % os.uname().machine)
        self.zygote = Zygote(pid, a)
        self.source = self.zygote
        self.legit.add(pid)
        if self.pid != 1:   # orphans of executions come here, not to the host's init
            conf.prctl(PR_SET_CHILD_SUBREAPER, 1)
        import queue
        import selectors   # the server's only: imported after the fork
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.sel.register(a, selectors.EVENT_READ, ("ctl", self.zygote))
        self.cleaner = queue.SimpleQueue()
        for target, name in ((self._manage, "manager"), (self._reap, "reaper"), (self._clean, "cleaner")):
            threading.Thread(target=target, name="strict-" + name, daemon=True).start()
        # Check now that execution processes can be made here: the first
        # one proves it, and is put back for the first call.
        proc = self._take(time.monotonic() + wait, first=True)
        with self.cond:
            proc.zygote.inflight -= 1
            self.ready.insert(0, proc)

    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:   # full: the manager is awake anyway
            pass

    def _post(self, *cmd):
        with self.cond:
            self.inbox.append(cmd)
        self._wake()

    # -- manager thread: the only one that forks and touches the selector

    def _manage(self):
        while True:
            with self.cond:
                inbox, self.inbox = self.inbox, []
            for cmd in inbox:
                self._command(cmd)
            retry = self._top_up()
            timeout = None if retry is None else max(retry - time.monotonic(), 0.0)
            for key, _ in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "wake":
                    os.read(self.wake_r, 4096)
                else:
                    self._on_ctl(key.fileobj, obj)

    def _top_up(self):
        """Asks for execution processes until `spares` are ready or being
        made; returns when to try again (monotonic) if a failure holds it
        back, else None."""
        with self.cond:
            src, gen = self.source, self.gen
            need = self.spares - len(self.ready) - self.pending if src is not None else 0
            if need <= 0:
                return None
            if time.monotonic() < self.retry_at:
                return self.retry_at
            self.pending += need
        for _ in range(need):
            self._ask(src, gen)
        return None

    def _command(self, cmd):
        import selectors
        op, z = cmd
        if op == "adopt":
            self.sel.register(z.ctl, selectors.EVENT_READ, ("ctl", z))
        elif op == "drop":   # a retired zygote with nothing in flight: it exits on EOF
            try:
                self.sel.unregister(z.ctl)
            except (KeyError, ValueError):
                pass
            with self.send_lock:
                z.ctl.close()

    def _ask(self, z, gen):
        """Asks z for an execution process for generation gen (self.pending
        counts it already) and puts it in ready, not waiting for it: the
        call that takes it reads its b"R" (_ready)."""
        proc = None
        try:
            chan, child, memfd = _new_channel()
        except OSError as e:
            why = "cannot create a channel: %s" % e
        else:
            try:
                with self.send_lock:
                    socket.send_fds(z.ctl, [b"F"], [child.fileno(), memfd])
                proc = Process(chan, memfd, gen, z)
            except (OSError, ValueError) as e:   # ValueError: its ctl was closed (dropped)
                chan.close()
                os.close(memfd)
                why = "cannot reach the zygote: %s" % e
            finally:
                child.close()
        with self.cond:
            self.pending -= 1
            if proc is not None and gen == self.gen and z is self.source:
                self.ready.append(proc)
                self.cond.notify_all()
                return
        if proc is not None:
            proc.close()   # stale: it exits on EOF
        elif z is self.source:
            self._failed(why)

    def _failed(self, why):
        with self.cond:
            if why != self.error:
                sys.__stderr__.write("strict isolation: %s\n" % why)
                sys.__stderr__.flush()
            self.error = why
            self.backoff = min(max(0.01, self.backoff * 2), 1.0)
            self.retry_at = time.monotonic() + self.backoff
            self.cond.notify_all()

    def _ready(self, proc, deadline):
        """Reads proc's b"R" (it is ready, with its pid); False, with the
        reason recorded (_failed), if it failed to start. A spare is ready
        long before it is taken as a rule: one recv."""
        chan = proc.chan
        try:
            head = chan.recv(READY.size, socket.MSG_DONTWAIT)
        except BlockingIOError:   # still starting: wait for it
            head = b""
        except OSError:
            head = None
        if head is not None and len(head) < READY.size:
            try:
                chan.settimeout(max(deadline - time.monotonic(), 0.001))
                head += chan.recv(READY.size - len(head), socket.MSG_WAITALL)
                chan.settimeout(None)
            except OSError:
                head = None
        head = head or b""
        if len(head) == READY.size and head[:1] == b"R":
            proc.pid = READY.unpack(head)[1]
            if self.error is not None:
                with self.cond:
                    self.error, self.backoff = None, 0.0
            return True
        why = "an execution process could not be started (the zygote could not fork: pids limit?)"
        if head[:1] == b"E":
            try:
                n = FRAME.unpack(head[1:5])[0]
                why = "an execution process could not be set up: " + (
                    head[5:] + chan.recv(max(0, n - len(head) + 5), socket.MSG_WAITALL)).decode("utf-8", "replace")
            except (OSError, struct.error):
                pass
        self._failed(why)
        return False

    def _on_ctl(self, ctl, z):
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 4096, 4)
        except OSError:
            msg, fds = b"", []
        for fd in fds:
            os.close(fd)
        if msg[:1] == b"X" and len(msg) == 9:
            pid, status = struct.unpack("<ii", msg[1:])
            self._exited(pid, status)
            return
        if msg:
            return
        try:
            self.sel.unregister(ctl)
        except (KeyError, ValueError):
            pass
        if z is self.zygote:
            self._zygote_lost("its control channel closed")
        with self.cond:   # a function zygote died: back to the runtime zygote
            if self.source is z:
                sys.__stderr__.write("strict isolation: the function zygote exited; preloading only the runtime\n")
                self._switch_locked("runtime", None)

    def _zygote_lost(self, why):
        sys.__stderr__.write("strict isolation: the zygote is gone (%s); exiting\n" % why)
        config.exit(config.EXIT_ZYGOTE_LOST)

    def _exited(self, pid, status):
        with self.cond:
            self.exits[pid] = status
            self.exit_order.append(pid)
            if len(self.exit_order) > 1024:
                for old in self.exit_order[:512]:
                    self.exits.pop(old, None)
                del self.exit_order[:512]
            self.cond.notify_all()

    # -- reaper and cleaner threads

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self._zygote_lost("no child left")
            except InterruptedError:
                continue
            if pid == self.zygote.pid:
                self._zygote_lost("exit status %d" % status)
            with self.cond:
                self.legit.discard(pid)
            self._exited(pid, status)

    def _clean(self):
        """Kills processes that outlived their execution. An execution process
        is a subreaper, so whatever it started is below it until it dies;
        then what survived the kill of its tree (started in the instant
        between the walk and the kill, or after it stopped being a
        subreaper) is re-parented here, and is not ours to keep. Swept after
        an execution that had started processes, and every second."""
        import queue
        while True:
            try:
                pid = self.cleaner.get(timeout=1.0)
            except queue.Empty:
                pid = None
            if pid is not None:
                with self.cond:
                    self.cond.wait_for(lambda: pid in self.exits, 1.0)
            for _ in range(50):
                with self.cond:
                    strays = [p for p in _children_of(self.pid) if p not in self.legit]
                if not strays:
                    break
                for p in strays:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.002)

    # -- preloading

    def preload(self, level, spec, timeout):
        """Switches the preload level; returns (level in force, error or None)."""
        if level not in LEVELS:
            raise BadRequest("level must be one of %s" % ", ".join(LEVELS))
        with self.preload_lock:
            if level != "function":
                with self.cond:
                    self._switch_locked(level, None)
                return level, None
            key = (spec.fid, spec.version, spec.entry)
            with self.cond:
                if self.fzygote is not None and self.fzygote.key == key and self.source is self.fzygote:
                    return "function", None
            z, err = self._function_zygote(spec, key, timeout)
            with self.cond:
                if z is None:
                    self._switch_locked("runtime", None)
                    return "runtime", err
                self._switch_locked("function", z)
            self._post("adopt", z)
            return "function", None

    def _function_zygote(self, spec, key, timeout):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        body = json.dumps({"function_id": key[0], "function_version": key[1], "entry": key[2]}).encode()
        try:
            socket.send_fds(self.zygote.ctl, [b"L" + body], [b.fileno()])
        except OSError as e:
            a.close()
            return None, "cannot reach the zygote: %s" % e
        finally:
            b.close()
        pid, end = None, time.monotonic() + timeout
        try:
            a.settimeout(min(timeout, PROCESS_WAIT))
            msg = a.recv(64)
            if msg[:1] == b"P":
                pid = struct.unpack("<i", msg[1:5])[0]
                a.settimeout(max(end - time.monotonic(), 0.001))
                msg = a.recv(8192)
            a.settimeout(None)
        except OSError as e:   # socket.timeout included
            msg = b"E" + ("importing the function took longer than %gs" % timeout
                          if isinstance(e, socket.timeout) else str(e)).encode()
        if msg[:1] == b"O" and pid:
            return Zygote(pid, a, key), None
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        a.close()
        return None, (msg[1:].decode("utf-8", "replace") or "the function zygote exited") if msg else \
            "the function zygote exited"

    def _switch_locked(self, level, fz):
        """Changes where execution processes come from; self.cond held."""
        old = self.fzygote
        self.level = level
        self.fzygote = fz
        self.source = fz if fz is not None else (self.zygote if level != "none" else None)
        self.gen += 1
        stale, self.ready = self.ready, []
        for proc in stale:
            proc.close()   # they exit on EOF
        if old is not None and old is not fz and not old.retired:
            old.retired = True
            if old.inflight == 0:
                self.inbox.append(("drop", old))
        self.cond.notify_all()
        self._wake()

    # -- executing

    def _take(self, deadline, first=False):
        """A ready execution process (None at level none); NoProcess if none
        became ready by deadline. With none asked for already, the call
        asks for its own; first: fail at the first failure to start one
        (the check at start)."""
        while True:
            proc = ask = None
            with self.cond:
                if self.source is None:
                    return None
                while self.ready and proc is None:
                    proc = self.ready.pop(0)
                    if proc.gen != self.gen:
                        proc.close()
                        proc = None
                if proc is not None:
                    proc.zygote.inflight += 1
                else:
                    now = time.monotonic()
                    if now >= deadline or (first and self.error is not None):
                        raise NoProcess(self.error or "none became ready in %gs" % PROCESS_WAIT)
                    if now >= self.retry_at:
                        self.pending += 1
                        ask = (self.source, self.gen)
                    else:
                        self.cond.wait(min(self.retry_at, deadline) - now)
            if ask is not None:
                self._ask(*ask)
            elif proc is not None:
                if proc.pid is not None or self._ready(proc, deadline):   # put back by start: ready
                    return proc
                self.finish(proc)

    def _fresh(self, deadline):
        """Level none: a fresh interpreter for this one execution, forked by
        the runtime zygote and executed (it imports nothing of it)."""
        chan, child, memfd = _new_channel()
        argv = [sys.executable, "-I", config.SERVER, "--execution-process",
                "--packages-dir", config.PACKAGES_DIR, "--max-log-bytes", str(config.MAX_LOG_BYTES),
                "--max-result-bytes", str(config.MAX_RESULT_BYTES), "--tmp-size", str(self.tmp_size),
                "--protect", ",".join(str(p) for p in self.conf.protected),
                "--hide", os.fsdecode(self.conf.hide or b""), "--cpu-cgroup", self.cpu_procs or ""]
        try:
            socket.send_fds(self.zygote.ctl, [b"E" + json.dumps(argv).encode()], [child.fileno(), memfd])
        except OSError as e:
            chan.close()
            os.close(memfd)
            raise NoProcess("cannot reach the zygote: %s" % e)
        finally:
            child.close()
        proc = Process(chan, memfd, self.gen, None)
        try:
            chan.settimeout(max(deadline - time.monotonic(), 0.001))
            head = chan.recv(READY.size, socket.MSG_WAITALL)
            chan.settimeout(None)
        except OSError:
            head = b""
        if len(head) != READY.size or head[:1] != b"R":
            proc.close()
            raise NoProcess("a fresh interpreter did not become ready")
        proc.pid = READY.unpack(head)[1]
        return proc

    def execute(self, job, raw, received):
        """Runs job in an execution process. Returns the /execute answer and
        the process, to be passed to finish once the answer is sent (killing
        it and preparing the next one then keeps that work off the caller's
        time). received is when the request was read (monotonic)."""
        t0 = time.monotonic()
        deadline = t0 + PROCESS_WAIT
        proc = None
        try:
            for _ in range(3):   # a ready process may have been killed meanwhile: take another
                proc = self._take(deadline) or self._fresh(deadline)
                try:
                    proc.chan.sendall(frame(raw))
                    break
                except OSError:
                    self.finish(proc)
                    proc = None
            if proc is None:
                raise NoProcess("execution processes kept dying before getting the request")
        except NoProcess as e:
            return response_body(job.eid, False, None,
                                 "Function execution failed: no process could be prepared for it (%s)." % e,
                                 time.monotonic() - t0, "", 0), None
        t1 = time.monotonic()
        limit = 6 * config.MAX_LOG_BYTES + config.MAX_RESULT_BYTES + (64 << 10)
        answer, timed_out = None, False
        try:
            answer = _recv_answer(proc.chan, limit, t1 + job.timeout)
        except socket.timeout:
            timed_out = True
        except (OSError, ValueError):
            pass
        t2 = time.monotonic()
        timing = {"acquire_ms": round((t1 - t0) * 1000, 3), "run_ms": round((t2 - t1) * 1000, 3),
                  "server_ms": round((t2 - received) * 1000, 3)}
        body = _checked(answer, timing) if answer is not None else None
        if body is None:
            # Stop it before reading its log: nothing may be added afterwards.
            _kill_tree(proc.pid)
            text, dropped = read_shared_log(proc.memfd, config.MAX_LOG_BYTES)
            if timed_out:
                body = timeout_body(job, t2 - t1, text, dropped, timing)
            else:
                why = "its process sent an invalid answer" if answer is not None else \
                    _describe_status(self._status(proc.pid))
                body = response_body(job.eid, False, None, "Function execution failed: %s." % why,
                                     t2 - t1, text, dropped, timing=timing)
        return body, proc

    def _status(self, pid, wait=1.0):
        with self.cond:
            self.cond.wait_for(lambda: pid in self.exits, wait)
            return self.exits.get(pid)

    def after_answer(self, proc):
        """finish, and a replacement asked for, once the answer is sent: in
        the call's thread rather than handed to another (a hand-over cost a
        queue, a wake-up and GIL switches per call, more CPU than the work;
        docs/benchmarks.md, "The worker server's share"). The engine's next
        request on this connection waits the ~0.1 ms in the socket."""
        if proc is None:
            return
        try:
            self.finish(proc)
            self._top_up()
        except Exception as e:   # a bug of ours: the connection goes on, later processes must die too
            sys.__stderr__.write("server.py: finishing an execution process: %r\n" % (e,))

    def finish(self, proc):
        """Kills an execution process with everything it started, and lets
        its zygote go if it was retired."""
        if proc is None:
            return
        tree = _kill_tree(proc.pid) if proc.pid else 0
        proc.close()
        z = proc.zygote
        with self.cond:
            if z is not None:
                z.inflight -= 1
                if z.retired and z.inflight == 0:
                    self.inbox.append(("drop", z))
                    self._wake()   # only then: the call's thread tops the spares up itself (after_answer)
        if tree > 1:   # it had started processes
            self.cleaner.put(proc.pid)


def _recv_answer(chan, limit, deadline):
    """An execution process's answer frame: None at EOF, socket.timeout once
    deadline (monotonic) passes, ValueError past limit. On the blocking
    channel with the kernel's receive timeout, set to what is left before
    each recv (a process dribbling bytes cannot stretch it): a setsockopt
    and a recv for an answer, where a Python timeout costs a poll and a
    switch to non-blocking mode besides."""
    data = bytearray()
    size = FRAME.size
    while len(data) < size:
        left = max(deadline - time.monotonic(), 0.0)
        if left <= 0:
            raise socket.timeout("timed out")
        sec = int(left)
        chan.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", sec, max(int((left - sec) * 1e6), 1 if sec == 0 else 0)))
        try:
            more = chan.recv(min(max(size - len(data), 65536), 1 << 20))
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        if not more:
            return None
        data += more
        if size == FRAME.size and len(data) >= FRAME.size:
            n = FRAME.unpack_from(data)[0]
            if n > limit:
                raise ValueError("frame of %d bytes exceeds %d" % (n, limit))
            size = FRAME.size + n
    return bytes(data[FRAME.size:size])


def _checked(answer, timing):
    """An execution process's answer, checked (it ran the function's code,
    which may have tampered with it) and with the server's timing added;
    None if it is not a proper answer."""
    try:
        res = json.loads(answer)
    except ValueError:
        return None
    if not (isinstance(res, dict) and "output" in res and isinstance(res.get("logs"), str)
            and type(res.get("success")) is bool and type(res.get("duration")) in (int, float)):
        return None
    t = res.get("timing")
    if (isinstance(t, dict) and t and all(type(v) in (int, float) for v in t.values())
            and next(reversed(res)) == "timing" and answer.endswith(b"}}")):
        # As response_body made it: add to the timing object in place
        # rather than encode a large answer again.
        extra = "".join(', "%s": %s' % (k, json.dumps(v)) for k, v in timing.items())
        return answer[:-2] + extra.encode() + b"}}"
    t = {k: v for k, v in t.items() if type(v) in (int, float)} if isinstance(t, dict) else {}
    t.update(timing)
    res["timing"] = t
    return json.dumps(res).encode()
