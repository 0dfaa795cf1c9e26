#!/usr/bin/python3
"""Qinling Python 3 worker server: runs one function's code for the Go engine.

Standard library only. Protocol and options are described in README.md.
Startup imports are kept minimal (inspect/traceback/importlib load lazily)
because cold start of a worker is on the hot path; the HTTP server modules
load only in the server, not in a fresh execution process.

Two isolation modes (README.md, docs/isolation.md):
  reuse   every execution runs in a thread of this process (upstream's warm
          reuse: module globals, files and processes persist between calls);
  strict  this process is the server and forks, once, a zygote that has the
          runtime (and, when told to preload, the function's modules)
          imported; every execution runs in a fresh process forked from the
          zygote before the call arrives, confined (its own /tmp, no signals
          to the worker's processes), and is killed with everything it
          started once it has answered.
"""

import contextvars
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

USAGE = ("usage: server.py (--socket PATH | [--host 127.0.0.1] --port N) "
         "[--packages-dir DIR] [--max-log-bytes N] [--max-result-bytes N] "
         "[--isolation reuse|strict] [--spares N] [--tmp-size BYTES] [--cpu-cgroup PROCS_FILE]")
EXIT_TAINTED = 3            # a timed-out call is still running: Go replaces us
EXIT_ZYGOTE_LOST = 4        # strict: the zygote died, no execution can start
MAX_BODY_BYTES = 64 << 20   # refuse absurd request bodies instead of buffering them

# Set by main().
PACKAGES_DIR = "/var/qinling/packages"
MAX_LOG_BYTES = 1 << 20
MAX_RESULT_BYTES = 1 << 20
SOCKET_PATH = None
SOCKET_INODE = None
STRICT = None               # the Strict object of a strict server

# Log buffer of the execution running in the current context (None = server code).
_current = contextvars.ContextVar("qinling_log", default=None)

_state_lock = threading.Lock()
_draining = False    # set once a call timed out; never cleared
_active = 0          # /execute requests whose response is not yet written


# ---------------------------------------------------------------- output capture

def _nbytes(s):
    # str.isascii() is O(1) in CPython, so the common case never encodes.
    return len(s) if s.isascii() else len(s.encode("utf-8", "replace"))


class LogBuffer:
    """One execution's output: keeps the first `cap` bytes, only counts the rest,
    so a function printing 100 MB costs no memory beyond the cap."""

    def __init__(self, cap):
        self.cap = cap
        self.data = bytearray()
        self.size = 0         # bytes kept
        self.dropped = 0
        self.closed = False   # execution answered: late writes go to real stderr
        self.lock = threading.Lock()   # threads started by the function share it

    def _append(self, b):
        self.data += b
        self.size += len(b)

    def _commit(self):
        """Called after every change of size or dropped (SharedLog publishes them)."""

    def add(self, s):
        with self.lock:
            if self.closed:
                return False
            room = self.cap - self.size
            if self.dropped or room <= 0:
                self.dropped += _nbytes(s)
                self._commit()
                return True
            fits = len(s) <= room
            head = (s if fits else s[:room]).encode("utf-8", "replace")
            if fits and len(head) <= room:
                self._append(head)
                self._commit()
                return True
            total = len(head) if fits else _nbytes(s)
            if len(head) > room:
                cut = room
                while cut and (head[cut] & 0xC0) == 0x80:   # don't split a UTF-8 char
                    cut -= 1
                head = head[:cut]
            self._append(head)
            self.dropped += total - len(head)
            self._commit()
            return True

    def close(self):
        with self.lock:
            self.closed = True
            return self.data.decode("utf-8", "replace"), self.dropped


LOG_HEADER = struct.Struct("<QQ")   # SharedLog: bytes kept, bytes dropped


class SharedLog(LogBuffer):
    """A LogBuffer kept in a memory file shared with the server (strict mode):
    the header is rewritten after every write, so the server can read what an
    execution printed even after killing it at its timeout."""

    def __init__(self, fd, cap):
        import mmap
        super().__init__(cap)
        self.mm = mmap.mmap(fd, LOG_HEADER.size + cap)
        self._commit()

    def _append(self, b):
        start = LOG_HEADER.size + self.size
        self.mm[start:start + len(b)] = b
        self.size += len(b)

    def _commit(self):
        LOG_HEADER.pack_into(self.mm, 0, self.size, self.dropped)

    def close(self):
        with self.lock:
            self.closed = True
            data = self.mm[LOG_HEADER.size:LOG_HEADER.size + self.size]
            return data.decode("utf-8", "replace"), self.dropped


def read_shared_log(fd, cap):
    """What an execution process left in its SharedLog (possibly killed
    mid-write, or lying: sizes are clamped): (text, dropped)."""
    try:
        size, dropped = LOG_HEADER.unpack(os.pread(fd, LOG_HEADER.size, 0))
        data = os.pread(fd, min(size, cap), LOG_HEADER.size)
    except (OSError, struct.error):
        return "", 0
    return data.decode("utf-8", "replace"), dropped


class Router:
    """Installed once as sys.stdout and sys.stderr. Each write goes to the log of the
    execution owning the current context, so concurrent executions stay separate."""

    def __init__(self, real):
        self._real = real

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        log = _current.get()
        if (log is None or not log.add(s)) and self._real is not None:
            try:
                self._real.write(s)
            except (OSError, ValueError):
                pass
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._real is not None:
            try:
                self._real.flush()
            except (OSError, ValueError):
                pass

    def isatty(self):
        return False

    def __getattr__(self, name):   # encoding, errors, fileno, buffer, ...
        return getattr(self._real, name)


_thread_start = threading.Thread.start


def _start_in_context(self):
    # New threads start with an empty contextvars context; carry the execution's
    # context over so output of threads a function starts lands in its log.
    if _current.get() is not None:
        ctx, run = contextvars.copy_context(), self.run
        self.run = lambda: ctx.run(run)
    _thread_start(self)


# ---------------------------------------------------------------- executing code

class EntryError(Exception):
    """Problem locating the entry point; the message becomes the output."""


class Job:
    def __init__(self, eid, fid, version, entry, args, kwargs, timeout):
        self.eid, self.fid, self.version, self.entry = eid, fid, version, entry
        self.args, self.kwargs, self.timeout = args, kwargs, timeout
        self.log = LogBuffer(MAX_LOG_BYTES)
        self.ok, self.result, self.output, self.duration = False, None, None, 0.0
        self.resolve = 0.0   # seconds spent finding the entry (importing on a first call)


_load_lock = threading.Lock()
_pkg = {"key": None, "path": None, "modules": {}}   # the function version being served


def _switch_package(key, path):
    # The worker normally serves one function version for life. If asked for another,
    # forget the old package's modules so same-named modules are not mixed up.
    import importlib
    old = _pkg["path"]
    if old is not None:
        while old in sys.path:
            sys.path.remove(old)
        prefix = old + os.sep
        for name, mod in list(sys.modules.items()):
            if (getattr(mod, "__file__", None) or "").startswith(prefix):
                del sys.modules[name]
    _pkg.update(key=key, path=path, modules={})
    importlib.invalidate_caches()


def _load_module(job, mod_name):
    path = os.path.join(PACKAGES_DIR, job.fid)
    with _load_lock:   # one import at a time: simple, and imports happen once
        if _pkg["key"] != (job.fid, job.version):
            _switch_package((job.fid, job.version), path)
        module = _pkg["modules"].get(mod_name)
        if module is not None:
            return module
        if not os.path.isdir(path):
            raise EntryError("Function package not found for function %s." % job.fid)
        if path not in sys.path:
            sys.path.insert(0, path)
        try:   # __import__ (unlike importlib.import_module) hides importlib's frames
            __import__(mod_name)
            module = sys.modules[mod_name]
        except BaseException as e:
            _log_traceback(job.log, e)
            raise EntryError("Failed to import module '%s': %s" % (mod_name, _text(e)))
        _pkg["modules"][mod_name] = module   # warm reuse: module globals persist
        return module


def _resolve(job):
    mod_name, _, func_name = job.entry.rpartition(".")
    if not mod_name or not func_name:
        raise EntryError("Invalid entry '%s': expected 'module.function'." % job.entry)
    module = _load_module(job, mod_name)
    func = getattr(module, func_name, None)
    if func is None and not hasattr(module, func_name):
        raise EntryError("Function '%s' not found in module '%s'." % (func_name, mod_name))
    if not callable(func):
        raise EntryError("Entry '%s' is not callable." % job.entry)
    return func


def _accepts_context(func):
    """True if func takes a `context` keyword or **kwargs. Upstream always passed
    context, which broke plain `def main(name)`."""
    f = getattr(func, "__func__", func)
    code = getattr(f, "__code__", None)
    if code is not None and not hasattr(f, "__wrapped__"):   # fast path, no inspect
        if code.co_flags & 0x08:   # CO_VARKEYWORDS
            return True
        end = code.co_argcount + code.co_kwonlyargcount
        return "context" in code.co_varnames[code.co_posonlyargcount:end]
    import inspect   # decorated functions, classes, callable objects
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind == p.VAR_KEYWORD or (p.name == "context" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) for p in params)


def _text(e):
    try:
        return str(e)
    except Exception:
        return ""


def _log_traceback(log, e):
    import traceback
    tb = e.__traceback__.tb_next or e.__traceback__   # hide this file's frame
    log.add("".join(traceback.format_exception(type(e), e, tb)))


def _run(job):
    """Resolve the entry and call it, capturing its output (a thread's body
    in reuse mode, the main thread of an execution process in strict mode)."""
    _current.set(job.log)
    start = time.monotonic()
    try:
        func = _resolve(job)
        job.resolve = time.monotonic() - start
        if _accepts_context(func):
            job.kwargs["context"] = {"os_session": None}
        job.result = func(*job.args, **job.kwargs)
        job.ok = True
    except EntryError as e:
        job.output = str(e)
        job.log.add(job.output + "\n")
    except (SystemExit, KeyboardInterrupt) as e:   # must not stop the worker
        _log_traceback(job.log, e)
        detail = _text(e)
        job.output = "Function raised %s%s." % (type(e).__name__, ": " + detail if detail else "")
    except BaseException as e:
        _log_traceback(job.log, e)
        job.output = _text(e) or type(e).__name__
    finally:
        job.duration = time.monotonic() - start


def execute(job):
    """Reuse mode: run job in a thread with its timeout; return (response
    JSON bytes, timed_out)."""
    global _draining
    t = threading.Thread(target=_run, args=(job,), name="exec-" + job.eid, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(min(job.timeout, threading.TIMEOUT_MAX))
    if t.is_alive():
        # Threads cannot be killed: the worker is tainted and drains, then exits.
        with _state_lock:
            _draining = True
        text, dropped = job.log.close()
        return timeout_body(job, time.monotonic() - start, text, dropped), True
    # job is final: the thread has ended.
    text, dropped = job.log.close()
    return response_body(job.eid, job.ok, job.result, job.output, job.duration, text, dropped), False


def response_body(eid, ok, result, failure, duration, text, dropped, note="", timing=None):
    """The /execute answer: output (the result, or the failure message),
    duration, the log framed as upstream's, success; with timing if given."""
    parts = ["Start execution: %s\n" % eid, text]
    if text and not text.endswith("\n"):
        parts.append("\n")
    if dropped:
        parts.append("... [log truncated: %d bytes dropped]\n" % dropped)
    parts += [note, "Finished execution: %s\n" % eid]

    if ok:
        try:
            output = json.dumps(result, allow_nan=False)   # ASCII: len == bytes
        except Exception as e:
            ok, output = False, json.dumps("Function result is not JSON serializable: %s" % e)
        else:
            if len(output) > MAX_RESULT_BYTES:
                ok, output = False, json.dumps("Function result too large: %d bytes (limit %d)."
                                               % (len(output), MAX_RESULT_BYTES))
    else:
        output = json.dumps(failure)
    # Assembled by hand so a large result is not encoded twice.
    body = '{"output": %s, "duration": %s, "logs": %s, "success": %s%s}' % (
        output, json.dumps(round(duration, 3)), json.dumps("".join(parts)),
        "true" if ok else "false", ', "timing": %s' % json.dumps(timing) if timing else "")
    return body.encode()


def timeout_body(job, elapsed, text, dropped, timing=None):
    return response_body(job.eid, False, None, "Function execution timeout.", elapsed, text, dropped,
                         "Execution timed out after %g seconds.\n" % job.timeout, timing)


class BadRequest(Exception):
    pass


def parse_job(req):
    if not isinstance(req, dict):
        raise BadRequest("request body must be a JSON object")

    def string(name, default=None):
        v = req.get(name)
        if v is None and default is not None:
            return default
        if not isinstance(v, str) or not v:
            raise BadRequest("%s is required and must be a non-empty string" % name)
        return v

    eid, fid, entry = string("execution_id"), string("function_id"), string("entry", "main.main")
    if "/" in fid or "\0" in fid or fid in (".", ".."):   # names a dir under packages-dir
        raise BadRequest("invalid function_id")
    version = req.get("function_version")
    version = 0 if version is None else version
    if type(version) is not int:
        raise BadRequest("function_version must be an integer")
    timeout = req.get("timeout")
    timeout = 5 if timeout is None else timeout
    if type(timeout) not in (int, float) or not 0 < timeout < float("inf"):
        raise BadRequest("timeout must be a positive number of seconds")
    data = req.get("input")
    args, kwargs = (), {}
    if isinstance(data, dict):
        kwargs = dict(data)
        if "__function_input" in kwargs:
            args = (kwargs.pop("__function_input"),)
    elif data is not None:   # lenient: a bare JSON value is the positional argument
        args = (data,)
    # cpu, memory_size, request_id, download_url: limits and downloads are the Go side's job.
    return Job(eid, fid, version, entry, args, kwargs, timeout)


# ---------------------------------------------------------------- package delivery

# A remote worker (a Kubernetes pod) gets its function's zip pushed by the
# engine with POST /package and serves only that function version from then
# on; a local worker has its package extracted by the Go side and never
# gets /package, so it serves whatever /execute names.
MAX_UNPACKED_BYTES = 512 << 20   # as pkg/archive: bounds zip bombs
MAX_PACKAGE_FILES = 10000
SERVING_FILE = ".qinling-serving"   # in the packages dir: survives a container restart
_package_lock = threading.Lock()
_serving = None   # (function_id, version) given by /package, or None


class PackageError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _load_serving():
    global _serving
    try:
        with open(os.path.join(PACKAGES_DIR, SERVING_FILE)) as f:
            d = json.load(f)
        _serving = (d["function_id"], int(d["function_version"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass


def _extract(data, dst):
    """Extract the zip bytes into the new directory dst: regular files and
    directories only, no absolute or .. paths, bounded file count and size
    (counted while writing: a zip's sizes can lie)."""
    import io
    import stat
    import zipfile
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise PackageError(400, "package is not a valid zip file: %s" % e)
    infos = zf.infolist()
    if len(infos) > MAX_PACKAGE_FILES:
        raise PackageError(413, "package has %d entries (limit %d)" % (len(infos), MAX_PACKAGE_FILES))
    total = 0
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if (not name or name.startswith("/") or "\\" in name or "\0" in name
                or any(p in ("", ".", "..") for p in parts)):
            raise PackageError(400, "package entry %r: unsafe path" % name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir():
            os.makedirs(os.path.join(dst, *parts), mode=0o755, exist_ok=True)
            continue
        if kind not in (0, stat.S_IFREG):
            raise PackageError(400, "package entry %r: not a regular file" % name)
        path = os.path.join(dst, *parts)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            with zf.open(info) as src, open(path, "xb") as out:
                while True:
                    chunk = src.read(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > MAX_UNPACKED_BYTES:
                        raise PackageError(413, "package unpacks to more than %d bytes" % MAX_UNPACKED_BYTES)
                    out.write(chunk)
        except FileExistsError:
            raise PackageError(400, "package entry %r: duplicate path" % name)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError) as e:   # includes CRC errors
            raise PackageError(400, "package entry %r: %s" % (name, e))
        os.chmod(path, 0o644)


def install_package(fid, version, md5, data):
    """POST /package: check, extract into PACKAGES_DIR/<fid>, dedicate this
    worker to (fid, version). Delivering the same package again is a no-op."""
    global _serving
    import hashlib
    import shutil
    import tempfile
    if not fid or "/" in fid or "\0" in fid or fid in (".", "..") or fid.startswith("."):
        raise PackageError(400, "invalid function_id")
    if md5 and hashlib.md5(data).hexdigest() != md5.lower():
        raise PackageError(400, "package checksum mismatch (md5 %s expected)" % md5)
    with _package_lock:
        final = os.path.join(PACKAGES_DIR, fid)
        if _serving == (fid, version) and os.path.isdir(final):
            return
        if _serving is not None:
            raise PackageError(409, "worker already serves function %s version %d" % _serving)
        os.makedirs(PACKAGES_DIR, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".pkg-", dir=PACKAGES_DIR)
        try:
            _extract(data, tmp)
            os.chmod(tmp, 0o755)
            if os.path.lexists(final):
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with open(os.path.join(PACKAGES_DIR, SERVING_FILE + ".tmp"), "w") as f:
            json.dump({"function_id": fid, "function_version": version}, f)
        os.rename(os.path.join(PACKAGES_DIR, SERVING_FILE + ".tmp"), os.path.join(PACKAGES_DIR, SERVING_FILE))
        _serving = (fid, version)


# ---------------------------------------------------------------- strict: confinement

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
        import mmap   # for SharedLog: imported here, before the zygote forks  # noqa: F401
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
                _write(path, data)
        # Nothing mounted here may propagate anywhere else.
        self._call(libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None), "make mounts private")
        keep = None   # an unsandboxed worker's packages may live under /tmp: keep them in view
        if (PACKAGES_DIR + os.sep).startswith("/tmp" + os.sep) and os.path.isdir(PACKAGES_DIR):
            keep = os.open(PACKAGES_DIR, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._call(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, self.tmp_opts), "mount /tmp")
        if keep is not None:
            os.makedirs(PACKAGES_DIR)
            self._call(libc.mount(b"/proc/self/fd/%d" % keep, os.fsencode(PACKAGES_DIR), None, MS_BIND | MS_REC, None),
                       "keep the packages directory")
            os.close(keep)
        if self.hide and os.path.isdir(self.hide):   # not already gone with the old /tmp
            self._call(libc.mount(b"tmpfs", self.hide, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                                  b"size=4096,mode=0555"), "hide the server's socket")
        os.chdir("/tmp")
        if userns:
            self.drop_capabilities()

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
            _write(self.cpu_procs, b"0")

    def apply_seccomp(self):
        if self.fprog is None:
            return
        self.prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        self._call(self.libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self.ct.addressof(self.fprog), 0, 0),
                   "install the seccomp filter")


def _write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _close_fds(keep):
    """Closes every descriptor above 2 not in keep (close_range): an
    execution must not hold the server's sockets, another execution's
    channel or a zygote's."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _child_signals():
    """A zygote handles SIGCHLD (to reap and report); everything else it
    forks gets the default back."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _confine(conf, keep):
    """Makes this freshly forked (or executed) process an execution process."""
    os.setsid()   # its own session and process group, killed as a whole afterwards
    conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    conf.prctl(PR_SET_CHILD_SUBREAPER, 1)   # orphans of what it starts stay below it
    conf.prctl(PR_SET_DUMPABLE, 1)          # to write its own uid_map and oom_score_adj
    try:   # the memory limit's OOM killer takes an execution before the worker
        _write(b"/proc/self/oom_score_adj", b"1000")
    except OSError:
        pass
    conf.private_tmp()
    conf.apply_seccomp()
    conf.prctl(PR_SET_DUMPABLE, 0)          # no ptrace, no /proc/<pid>/mem for its siblings
    _close_fds(keep)


# ---------------------------------------------------------------- strict: execution processes

FRAME = struct.Struct("<I")   # length prefix on an execution process's channel
READY = struct.Struct("<ci")  # b"R", pid


def _frame(data):
    return FRAME.pack(len(data)) + data


def _recv_exact(sock, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return bytes(buf)


def _recv_frame(sock, limit, deadline=None):
    """Reads one length-prefixed frame: None at EOF, socket.timeout once
    deadline (monotonic) passes. A small frame takes one recv."""
    if deadline is not None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
    data = sock.recv(65536)
    while 0 < len(data) < FRAME.size:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    if not data:
        return None
    n = FRAME.unpack_from(data)[0]
    if n > limit:
        raise ValueError("frame of %d bytes exceeds %d" % (n, limit))
    if len(data) >= FRAME.size + n:
        return data[FRAME.size:FRAME.size + n]
    if deadline is not None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
    rest = _recv_exact(sock, FRAME.size + n - len(data))
    return None if rest is None else data[FRAME.size:] + rest


_preloaded = None   # (function_id, version, entry) imported by a function zygote
_WARM = (b'{"execution_id": "warm", "function_id": "warm", "function_version": 0, '
         b'"entry": "main.main", "input": {"name": "x", "v": [1, 2.5, null, true]}, "timeout": 5}')


def _noop(name=None, v=None, **kwargs):
    return {"a": [1, "b", 2.5, None], "name": name}


def _warm(log):
    """Runs the execution path once with a stand-in function, so that the
    pages an execution writes are copied from the zygote now, before the
    call, rather than one page fault at a time while the caller waits.
    log (the execution's SharedLog) is written to and emptied again."""
    job = parse_job(json.loads(_WARM))
    job.log = log
    token = _current.set(log)
    start = time.monotonic()
    try:
        print("warm", 1, 2.5, {"a": None})
        if _preloaded:   # find (not call) the real entry
            fid, version, entry = _preloaded
            _accepts_context(_resolve(Job("warm", fid, version, entry, (), {}, 1)))
        func = _noop
        if _accepts_context(func):
            job.kwargs["context"] = {"os_session": None}
        job.result = func(*job.args, **job.kwargs)
    except BaseException:
        pass
    finally:
        _current.reset(token)
    text, dropped = log.close()
    body = response_body(job.eid, True, job.result, None, time.monotonic() - start, text, dropped,
                         timing={"import_ms": 0.0})
    _frame(body)
    with log.lock:   # back to empty for the real execution
        log.size = log.dropped = 0
        log.closed = False
        log._commit()


def _process_main(chan_fd, log_fd, conf, parent_ctl=None, warm=False):
    """Body of an execution process: confine itself, say it is ready, run the
    one request it gets, answer, then wait to be killed. Never returns."""
    _child_signals()
    if parent_ctl is not None:   # the zygote's control socket
        os.close(parent_ctl.detach())
    chan = socket.socket(fileno=chan_fd)
    try:
        _confine(conf, {chan_fd, log_fd})
        log = SharedLog(log_fd, MAX_LOG_BYTES)
        if warm:
            _warm(log)
        conf.join_cpu()
    except BaseException as e:
        msg = ("%s: %s" % (type(e).__name__, _text(e))).encode()
        try:
            chan.sendall(b"E" + _frame(msg))
        finally:
            os._exit(1)
    me = os.getpid()
    chan.sendall(READY.pack(b"R", me))
    try:
        raw = _recv_frame(chan, MAX_BODY_BYTES)
    except (OSError, ValueError):
        raw = None
    if raw is None:   # retired before use
        os._exit(0)
    job = parse_job(json.loads(raw))   # validated by the server already
    job.log = log
    _run(job)
    if os.getpid() != me:   # a process the function forked came back here
        os._exit(0)
    text, dropped = log.close()
    body = response_body(job.eid, job.ok, job.result, job.output, job.duration, text, dropped,
                         timing={"import_ms": round(job.resolve * 1000, 3)})
    try:
        chan.sendall(_frame(body))
        chan.recv(1)   # the server kills this process group once it has the answer
    finally:
        os._exit(0)


# ---------------------------------------------------------------- strict: zygotes

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


def _zygote_loop(ctl, conf, ancestors, functions):
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
            _fork(fds, lambda: _process_main(fds[0], fds[1], conf, ctl, warm=True))
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
    _child_signals()
    try:   # before the new interpreter allocates anything
        _write(b"/proc/self/oom_score_adj", b"1000")
    except OSError:
        pass
    for fd, target in ((chan_fd, 3), (log_fd, 4)):
        if fd != target:
            os.dup2(fd, target)
        os.set_inheritable(target, True)
    os.execv(argv[0], argv)


def _function_zygote(ctl_fd, spec, conf, protect, parent_ctl):
    """Body of a function zygote, forked from the runtime zygote: imports the
    function's module (under the seccomp filter, as the function's code runs
    now), reports b"O" or b"E" + why, then forks execution processes that
    have it imported."""
    global _preloaded, _load_lock
    _child_signals()
    os.close(parent_ctl.detach())
    ctl = socket.socket(fileno=ctl_fd)
    ctl.send(b"P" + struct.pack("<i", os.getpid()))
    conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    conf.prctl(PR_SET_DUMPABLE, 1)
    try:   # it runs the module's code: the OOM killer may take it before the server
        _write(b"/proc/self/oom_score_adj", b"500")
    except OSError:
        pass
    conf.prctl(PR_SET_DUMPABLE, 0)
    conf.protect(protect)
    conf.apply_seccomp()
    _close_fds({ctl_fd})
    _load_lock = threading.Lock()
    fid, version, entry = spec["function_id"], spec["function_version"], spec["entry"]
    job = Job("preload", fid, version, entry, (), {}, 1)
    err = None
    try:
        _resolve(job)
        if threading.active_count() > 1 or len(os.listdir("/proc/self/task")) > 1:
            err = ("importing it started threads, which a process forked from it would not have; "
                   "its module is imported in each execution instead")
    except EntryError as e:
        err = str(e)
    except BaseException as e:
        err = "%s: %s" % (type(e).__name__, _text(e))
    if err:
        ctl.send(b"E" + err.encode("utf-8", "replace")[:4000])
        os._exit(0)
    _preloaded = (fid, version, entry)
    ctl.send(b"O")
    _zygote_loop(ctl, conf, protect, functions=False)


# ---------------------------------------------------------------- strict: server side

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
    """A socketpair and a log memory file for one execution process."""
    chan, child = socket.socketpair()
    memfd = os.memfd_create("qinling-log", os.MFD_CLOEXEC)
    os.ftruncate(memfd, LOG_HEADER.size + MAX_LOG_BYTES)
    return chan, child, memfd


def _children_of(pid):
    """Live children of pid, via /proc/<pid>/task/*/children (or a /proc scan)."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    try:
        for tid in tasks:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(p) for p in f.read().split()]
        return out
    except FileNotFoundError:
        pass
    except OSError:
        return out
    for name in os.listdir("/proc"):   # kernel without CONFIG_PROC_CHILDREN
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    stat = f.read()
                if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                    out.append(int(name))
            except (OSError, ValueError, IndexError):
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
    for target in [-pid] + sorted(seen):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return len(seen)


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
    starts; a manager thread asks it (or the function zygote) for execution
    processes, keeps `spares` of them ready, and watches the zygotes; a
    reaper thread reaps this process's children (it is PID 1 of the
    sandbox, or a subreaper); a cleaner thread kills processes that outlive
    their execution."""

    def __init__(self, spares, tmp_size, cpu_procs=None):
        self.spares = spares
        self.tmp_size = tmp_size
        self.cpu_procs = cpu_procs
        self.cond = threading.Condition()
        self.level = "runtime"
        self.gen = 0               # bumped when the level changes: older processes are stale
        self.ready = []            # Process objects waiting for a request
        self.pending = 0           # asked for, not yet ready
        self.waiting = 0           # requests waiting for a process
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
        self.cleaner = None

    # -- start

    def start(self, wait=PROCESS_WAIT):
        """Forks the zygote, starts the threads, and waits for the first
        execution process: NoProcess if none can be made here."""
        self.pid = os.getpid()
        sock_dir = os.path.dirname(SOCKET_PATH) if SOCKET_PATH else None
        if sock_dir and (PACKAGES_DIR + os.sep).startswith(sock_dir.rstrip(os.sep) + os.sep):
            sock_dir = None   # unsandboxed: the packages are next to the socket, keep them
        ancestors = [1] if self.pid == 1 else [1, self.pid]
        conf = Confinement(self.tmp_size, sock_dir, ancestors, self.cpu_procs)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()   # before any thread: the zygote is a clean single-threaded copy
        if pid == 0:
            try:
                a.close()
                conf.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                conf.prctl(PR_SET_DUMPABLE, 0)
                _zygote_loop(b, conf, ancestors, functions=True)
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
        self.finishing = queue.SimpleQueue()
        for target, name in ((self._manage, "manager"), (self._reap, "reaper"), (self._clean, "cleaner"),
                             (self._finish_loop, "finisher")):
            threading.Thread(target=target, name="strict-" + name, daemon=True).start()
        # Check now that execution processes can be made here.
        with self.cond:   # as if a request waited: the first process proves it works
            self.waiting += 1
            end = time.monotonic() + wait
            while not self.ready and self.error is None and time.monotonic() < end:
                self._wake()
                self.cond.wait(0.05)
            self.waiting -= 1
            if not self.ready:
                raise NoProcess(self.error or "no execution process became ready in %gs" % wait)

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
        import selectors
        while True:
            with self.cond:
                now = time.monotonic()
                src = self.source
                need = 0
                if src is not None:
                    need = max(self.spares, self.waiting) - len(self.ready) - self.pending
                timeout = None
                if need > 0 and now < self.retry_at:
                    timeout, need = self.retry_at - now, 0
                inbox, self.inbox = self.inbox, []
            for cmd in inbox:
                self._command(cmd)
            for _ in range(max(need, 0)):
                self._ask(src)
            for key, _ in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "wake":
                    os.read(self.wake_r, 4096)
                elif kind == "ctl":
                    self._on_ctl(key.fileobj, obj)
                else:
                    self._on_ready(key.fileobj, obj)

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
            z.ctl.close()

    def _ask(self, z):
        import selectors
        try:
            chan, child, memfd = _new_channel()
        except OSError as e:
            return self._failed("cannot create a channel: %s" % e)
        try:
            socket.send_fds(z.ctl, [b"F"], [child.fileno(), memfd])
        except OSError as e:
            chan.close()
            os.close(memfd)
            return self._failed("cannot reach the zygote: %s" % e)
        finally:
            child.close()
        with self.cond:
            self.pending += 1
            gen = self.gen
        self.sel.register(chan, selectors.EVENT_READ, ("process", Process(chan, memfd, gen, z)))

    def _failed(self, why):
        with self.cond:
            if why != self.error:
                sys.__stderr__.write("strict isolation: %s\n" % why)
                sys.__stderr__.flush()
            self.error = why
            self.backoff = min(max(0.01, self.backoff * 2), 1.0)
            self.retry_at = time.monotonic() + self.backoff
            self.cond.notify_all()

    def _on_ready(self, chan, proc):
        self.sel.unregister(chan)
        try:
            head = chan.recv(READY.size, socket.MSG_WAITALL)
        except OSError:
            head = b""
        with self.cond:
            self.pending -= 1
        if len(head) == READY.size and head[:1] == b"R":
            proc.pid = READY.unpack(head)[1]
            with self.cond:
                if proc.gen == self.gen and proc.zygote is self.source:
                    self.ready.append(proc)
                    self.error, self.backoff = None, 0.0
                    self.cond.notify_all()
                    return
            proc.close()   # stale: it exits on EOF
            return
        why = "an execution process could not be started (the zygote could not fork: pids limit?)"
        if head[:1] == b"E":
            try:
                n = FRAME.unpack(head[1:5])[0]
                why = "an execution process could not be set up: " + (
                    head[5:] + chan.recv(max(0, n - len(head) + 5), socket.MSG_WAITALL)).decode("utf-8", "replace")
            except (OSError, struct.error):
                pass
        proc.close()
        self._failed(why)

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
        _exit(EXIT_ZYGOTE_LOST)

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

    def _take(self, deadline):
        with self.cond:
            self.waiting += 1
            try:
                while True:
                    if self.source is None:
                        return None
                    while self.ready:
                        proc = self.ready.pop(0)
                        if proc.gen == self.gen:
                            proc.zygote.inflight += 1
                            return proc
                        proc.close()
                    self._wake()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise NoProcess(self.error or "none became ready in %gs" % PROCESS_WAIT)
                    self.cond.wait(left)
            finally:
                self.waiting -= 1
                self._wake()   # top the spares up

    def _fresh(self, deadline):
        """Level none: a fresh interpreter for this one execution, forked by
        the runtime zygote and executed (it imports nothing of it)."""
        chan, child, memfd = _new_channel()
        argv = [sys.executable, "-I", os.path.abspath(__file__), "--execution-process",
                "--packages-dir", PACKAGES_DIR, "--max-log-bytes", str(MAX_LOG_BYTES),
                "--max-result-bytes", str(MAX_RESULT_BYTES), "--tmp-size", str(self.tmp_size),
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
                    proc.chan.sendall(_frame(raw))
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
        limit = 6 * MAX_LOG_BYTES + MAX_RESULT_BYTES + (64 << 10)
        answer, timed_out = None, False
        try:
            answer = _recv_frame(proc.chan, limit, t1 + job.timeout)
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
            text, dropped = read_shared_log(proc.memfd, MAX_LOG_BYTES)
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

    def finish_soon(self, proc):
        """finish, off the request's thread: with keep-alive the engine's
        next request on this connection is read by that thread, and must not
        wait for the last process to be killed."""
        if proc is not None:
            self.finishing.put(proc)

    def _finish_loop(self):
        while True:
            proc = self.finishing.get()
            try:
                self.finish(proc)
            except Exception as e:   # never lose the thread: later processes must die too
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
            self._wake()
        if tree > 1:   # it had started processes
            self.cleaner.put(proc.pid)


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


class PreloadSpec:
    """A /preload request: level, and the function as in /execute."""

    def __init__(self, req):
        if not isinstance(req, dict):
            raise BadRequest("request body must be a JSON object")
        job = parse_job(dict(req, execution_id="preload"))
        self.fid, self.version, self.entry, self.timeout = job.fid, job.version, job.entry, job.timeout
        self.level = req.get("level")


# ---------------------------------------------------------------- HTTP

def _http_classes():
    """The HTTP server classes; defined on demand so that a fresh execution
    process does not import http.server."""
    import socketserver
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive for the engine's connection pool
        server_version = "qinling-python3"
        sys_version = ""
        timeout = 300                   # drop idle keep-alive connections eventually

        def address_string(self):       # unix-socket peers have no (host, port)
            return "unix" if not isinstance(self.client_address, tuple) else self.client_address[0]

        def log_message(self, *args):   # per-request logging costs time and says little
            pass

        def send(self, status, body, ctype="application/json", close=False):
            if close or _draining:
                self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status, obj, close=False):
            self.send(status, json.dumps(obj).encode(), close=close)

        def do_GET(self):
            if self.path.split("?", 1)[0] != "/ping":
                return self.send_json(404, {"error": "not found"})
            if _draining:
                return self.send_json(503, {"error": "worker draining"}, close=True)
            self.send(200, b"pong", "text/plain; charset=utf-8")

        def body(self):
            """The request body, or None once an error has been answered."""
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.send_json(400, {"error": "Content-Length required"}, close=True)
                return None
            if not 0 <= length <= MAX_BODY_BYTES:
                self.send_json(413, {"error": "request body too large"}, close=True)
                return None
            return self.rfile.read(length)

        def do_POST(self):
            global _active
            path = self.path.split("?", 1)[0]
            if path == "/preload":
                return self.preload()
            if path == "/package":
                return self.package()
            if path != "/execute":
                return self.send_json(404, {"error": "not found"}, close=True)
            if _draining:
                return self.send_json(503, {"error": "worker draining"}, close=True)
            received = time.monotonic()
            raw = self.body()
            if raw is None:
                return
            try:
                job = parse_job(json.loads(raw))
            except (ValueError, BadRequest) as e:   # JSONDecodeError is a ValueError
                return self.send_json(400, {"error": "invalid request: %s" % e})
            serving = _serving
            if serving is not None and (job.fid, job.version) != serving:
                # Our address was given to the engine for another function
                # (a reused pod IP): nothing runs, the engine looks elsewhere.
                return self.send_json(410, {"error": "this worker serves function %s version %d" % serving})
            if STRICT is not None:
                body, proc = STRICT.execute(job, raw, received)
                try:
                    return self.send(200, body)
                finally:
                    STRICT.finish_soon(proc)
            with _state_lock:   # checked again under the lock: draining may just have begun
                accepted = not _draining
                _active += accepted
            if not accepted:
                return self.send_json(503, {"error": "worker draining"}, close=True)
            try:
                body, timed_out = execute(job)
                self.send(200, body, close=timed_out)
            finally:
                with _state_lock:
                    _active -= 1

        def package(self):
            from urllib.parse import parse_qs
            query = parse_qs(self.path.partition("?")[2])
            raw = self.body()
            if raw is None:
                return
            try:
                fid = query.get("function_id", [""])[0]
                version = int(query.get("function_version", ["0"])[0])
                if version < 0:
                    raise ValueError("negative")
            except ValueError:
                return self.send_json(400, {"error": "invalid request: function_version must be an integer"})
            try:
                install_package(fid, version, query.get("md5", [""])[0], raw)
            except PackageError as e:
                return self.send_json(e.status, {"error": str(e)})
            except OSError as e:
                return self.send_json(500, {"error": "cannot store the package: %s" % e})
            self.send_json(200, {"function_id": fid, "function_version": version})

        def preload(self):
            raw = self.body()
            if raw is None:
                return
            try:
                spec = PreloadSpec(json.loads(raw))
                if STRICT is None:   # reuse: modules are imported on the first call
                    return self.send_json(200, {"level": "reuse"})
                level, err = STRICT.preload(spec.level, spec, spec.timeout)
            except (ValueError, BadRequest) as e:
                return self.send_json(400, {"error": "invalid request: %s" % e})
            self.send_json(200, {"level": level, "error": err})

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False
        request_queue_size = 128   # a full unix-socket backlog makes clients fail with EAGAIN

        def server_bind(self):
            # Skip HTTPServer.server_bind: its getfqdn() may do slow DNS and fails on AF_UNIX.
            socketserver.TCPServer.server_bind(self)
            addr = self.socket.getsockname()
            self.server_name, self.server_port = (addr[0], addr[1]) if isinstance(addr, tuple) else ("localhost", 0)

        def process_request_thread(self, request, client_address):
            super().process_request_thread(request, client_address)
            # The connection is closed, so any timeout response has been flushed. Exit once
            # draining and no execution still owes a response.
            with _state_lock:
                done = _draining and _active == 0
            if done:
                _exit(EXIT_TAINTED)

    class UnixServer(Server):
        address_family = socket.AF_UNIX

    return Handler, Server, UnixServer


def _remove_socket():
    try:   # only our own socket: a replacement worker may reuse the path
        if SOCKET_PATH and os.stat(SOCKET_PATH).st_ino == SOCKET_INODE:
            os.unlink(SOCKET_PATH)
    except OSError:
        pass


def _exit(code):
    _remove_socket()
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)   # don't wait for function threads that may never end


def parse_args(argv):
    opts = {"socket": None, "host": "127.0.0.1", "port": None,
            "packages-dir": os.environ.get("QINLING_PACKAGES_DIR") or "/var/qinling/packages",
            "max-log-bytes": "1048576", "max-result-bytes": "1048576",
            "isolation": "reuse", "spares": "2", "tmp-size": str(64 << 20), "cpu-cgroup": "",
            # Internal: how the server starts a fresh execution process (level none).
            "execution-process": None, "protect": "", "hide": ""}
    flags = {"execution-process"}
    it = iter(argv)
    try:   # hand-rolled: argparse alone costs more import time than the rest
        for arg in it:
            if arg in ("-h", "--help"):
                print(USAGE)
                sys.exit(0)
            name, eq, value = arg.partition("=")
            if not name.startswith("--") or name[2:] not in opts:
                raise ValueError("unknown option %s" % name)
            opts[name[2:]] = "1" if name[2:] in flags else (value if eq else next(it))
        for key in ("port", "max-log-bytes", "max-result-bytes", "spares", "tmp-size"):
            if opts[key] is not None and int(opts[key]) < 0:
                raise ValueError("%s must not be negative" % key)
        if opts["isolation"] not in ("reuse", "strict"):
            raise ValueError("--isolation must be reuse or strict")
        if opts["socket"] is None and opts["port"] is None and not opts["execution-process"]:
            raise ValueError("--socket or --port is required")
    except (StopIteration, ValueError) as e:
        sys.stderr.write("%s\nserver.py: error: %s\n" % (USAGE, str(e) or "option needs a value"))
        sys.exit(2)
    return opts


def _fresh_process(opts):
    """A fresh interpreter started for one execution (strict, level none)."""
    protect = [int(p) for p in opts["protect"].split(",") if p]
    conf = Confinement(int(opts["tmp-size"]), opts["hide"] or None, protect, opts["cpu-cgroup"] or None)
    _process_main(3, 4, conf)


def main(argv):
    global PACKAGES_DIR, MAX_LOG_BYTES, MAX_RESULT_BYTES, SOCKET_PATH, SOCKET_INODE, STRICT
    opts = parse_args(argv)
    PACKAGES_DIR = os.path.abspath(opts["packages-dir"])
    MAX_LOG_BYTES, MAX_RESULT_BYTES = int(opts["max-log-bytes"]), int(opts["max-result-bytes"])
    _load_serving()

    # Functions must not import this server's directory as a package of theirs.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.stdout, sys.stderr = Router(sys.__stdout__), Router(sys.__stderr__)
    threading.Thread.start = _start_in_context
    if opts["execution-process"]:
        _fresh_process(opts)

    if opts["socket"]:
        SOCKET_PATH = os.path.abspath(opts["socket"])
    if opts["isolation"] == "strict":
        # Before the listening socket exists and before any thread starts (the
        # zygote must inherit neither), and before the HTTP modules load (the
        # smaller the zygote, the cheaper each fork and exit).
        STRICT = Strict(int(opts["spares"]), int(opts["tmp-size"]), opts["cpu-cgroup"] or None)
        try:
            STRICT.start()
        except (NoProcess, OSError) as e:
            sys.__stderr__.write("server.py: error: strict isolation is not available here: %s\n" % e)
            sys.__stderr__.flush()
            os._exit(2)
    Handler, Server, UnixServer = _http_classes()
    if SOCKET_PATH:
        try:   # a stale socket from a dead worker would make bind fail
            import stat
            if stat.S_ISSOCK(os.lstat(SOCKET_PATH).st_mode):
                os.unlink(SOCKET_PATH)
        except FileNotFoundError:
            pass
        server = UnixServer(SOCKET_PATH, Handler)
        SOCKET_INODE = os.stat(SOCKET_PATH).st_ino
        where = "unix:" + SOCKET_PATH
    else:
        server = Server((opts["host"], int(opts["port"])), Handler)
        where = "%s:%d" % (server.server_name, server.server_port)

    def on_signal(signum, frame):
        raise SystemExit(0)   # unwinds serve_forever in the main thread
    if os.getpid() != 1:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    else:
        # PID 1 of the sandbox: the kernel drops signals it has no handler for,
        # so nothing inside can stop it; the engine stops it with SIGKILL.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.__stderr__.write("qinling python3 runtime listening on %s (isolation %s)\n" % (where, opts["isolation"]))
    sys.__stderr__.flush()
    try:
        server.serve_forever()
    except SystemExit:
        pass
    server.server_close()
    _exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
