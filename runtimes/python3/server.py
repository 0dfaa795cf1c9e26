#!/usr/bin/python3
"""Qinling Python 3 worker server: runs one function's code for the Go engine.

Standard library only. Protocol and options are described in README.md.
Startup imports are kept minimal (inspect/traceback/importlib load lazily)
because cold start of a worker is on the hot path.
"""

import contextvars
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = ("usage: server.py (--socket PATH | [--host 127.0.0.1] --port N) "
         "[--packages-dir DIR] [--max-log-bytes N] [--max-result-bytes N]")
EXIT_TAINTED = 3            # a timed-out call is still running: Go replaces us
MAX_BODY_BYTES = 64 << 20   # refuse absurd request bodies instead of buffering them

# Set by main().
PACKAGES_DIR = "/var/qinling/packages"
MAX_LOG_BYTES = 1 << 20
MAX_RESULT_BYTES = 1 << 20
SOCKET_PATH = None
SOCKET_INODE = None

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
        self.dropped = 0
        self.closed = False   # execution answered: late writes go to real stderr
        self.lock = threading.Lock()   # threads started by the function share it

    def add(self, s):
        with self.lock:
            if self.closed:
                return False
            room = self.cap - len(self.data)
            if self.dropped or room <= 0:
                self.dropped += _nbytes(s)
                return True
            fits = len(s) <= room
            head = (s if fits else s[:room]).encode("utf-8", "replace")
            if fits and len(head) <= room:
                self.data += head
                return True
            total = len(head) if fits else _nbytes(s)
            if len(head) > room:
                cut = room
                while cut and (head[cut] & 0xC0) == 0x80:   # don't split a UTF-8 char
                    cut -= 1
                head = head[:cut]
            self.data += head
            self.dropped += total - len(head)
            return True

    def close(self):
        with self.lock:
            self.closed = True
            return self.data.decode("utf-8", "replace"), self.dropped


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
    """Thread body: resolve the entry and call it, capturing its output."""
    _current.set(job.log)
    start = time.monotonic()
    try:
        func = _resolve(job)
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
    """Run job with its timeout; return (response JSON bytes, timed_out)."""
    global _draining
    t = threading.Thread(target=_run, args=(job,), name="exec-" + job.eid, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(min(job.timeout, threading.TIMEOUT_MAX))
    timed_out = t.is_alive()
    # Locals from here on: a timed-out call may still finish and write to job.
    ok, result, failure, duration, note = job.ok, job.result, job.output, job.duration, ""
    if timed_out:
        # Threads cannot be killed: the worker is tainted and drains, then exits.
        with _state_lock:
            _draining = True
        ok, failure, duration = False, "Function execution timeout.", time.monotonic() - start
        note = "Execution timed out after %g seconds.\n" % job.timeout
    text, dropped = job.log.close()
    parts = ["Start execution: %s\n" % job.eid, text]
    if text and not text.endswith("\n"):
        parts.append("\n")
    if dropped:
        parts.append("... [log truncated: %d bytes dropped]\n" % dropped)
    parts += [note, "Finished execution: %s\n" % job.eid]

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
    body = '{"output": %s, "duration": %s, "logs": %s, "success": %s}' % (
        output, json.dumps(round(duration, 3)), json.dumps("".join(parts)),
        "true" if ok else "false")
    return body.encode(), timed_out


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


# ---------------------------------------------------------------- HTTP

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

    def do_POST(self):
        global _active
        if self.path.split("?", 1)[0] != "/execute":
            return self.send_json(404, {"error": "not found"}, close=True)
        if _draining:
            return self.send_json(503, {"error": "worker draining"}, close=True)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self.send_json(400, {"error": "Content-Length required"}, close=True)
        if not 0 <= length <= MAX_BODY_BYTES:
            return self.send_json(413, {"error": "request body too large"}, close=True)
        try:
            job = parse_job(json.loads(self.rfile.read(length)))
        except (ValueError, BadRequest) as e:   # JSONDecodeError is a ValueError
            return self.send_json(400, {"error": "invalid request: %s" % e})
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


def parse_args(argv):
    opts = {"socket": None, "host": "127.0.0.1", "port": None,
            "packages-dir": os.environ.get("QINLING_PACKAGES_DIR") or "/var/qinling/packages",
            "max-log-bytes": "1048576", "max-result-bytes": "1048576"}
    it = iter(argv)
    try:   # hand-rolled: argparse alone costs more import time than the rest
        for arg in it:
            if arg in ("-h", "--help"):
                print(USAGE)
                sys.exit(0)
            name, eq, value = arg.partition("=")
            if not name.startswith("--") or name[2:] not in opts:
                raise ValueError("unknown option %s" % name)
            opts[name[2:]] = value if eq else next(it)
        for key in ("port", "max-log-bytes", "max-result-bytes"):
            if opts[key] is not None and int(opts[key]) < 0:
                raise ValueError("%s must not be negative" % key)
        if opts["socket"] is None and opts["port"] is None:
            raise ValueError("--socket or --port is required")
    except (StopIteration, ValueError) as e:
        sys.stderr.write("%s\nserver.py: error: %s\n" % (USAGE, str(e) or "option needs a value"))
        sys.exit(2)
    return opts


def main(argv):
    global PACKAGES_DIR, MAX_LOG_BYTES, MAX_RESULT_BYTES, SOCKET_PATH, SOCKET_INODE
    opts = parse_args(argv)
    PACKAGES_DIR = os.path.abspath(opts["packages-dir"])
    MAX_LOG_BYTES, MAX_RESULT_BYTES = int(opts["max-log-bytes"]), int(opts["max-result-bytes"])

    # Functions must not import this server's directory as a package of theirs.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.stdout, sys.stderr = Router(sys.__stdout__), Router(sys.__stderr__)
    threading.Thread.start = _start_in_context

    if opts["socket"]:
        SOCKET_PATH = os.path.abspath(opts["socket"])
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
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.__stderr__.write("qinling python3 runtime listening on %s\n" % where)
    sys.__stderr__.flush()
    try:
        server.serve_forever()
    except SystemExit:
        pass
    server.server_close()
    _exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
