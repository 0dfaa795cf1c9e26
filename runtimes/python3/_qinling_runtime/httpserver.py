"""The worker's HTTP API (README.md): /ping, /execute, /package, /preload,
served on wire.py's connections, one thread per connection."""

import errno
import json
import sys
import threading
import time

from . import config, package, reuse, workertoken
from .execution import BadRequest, parse_job
from .wire import Closed, Connection, Refused

_PONG = b"pong"


class Handler:
    """Answers requests, executions in strict (a Strict) or, if None, in
    reuse isolation."""

    def __init__(self, strict):
        self.strict = strict

    def serve(self, sock):
        """Serves one connection until it closes; raises nothing."""
        conn = None
        try:
            conn = Connection(sock)
            while self._one(conn):
                pass
        except Exception:   # a bug of ours: this connection ends, the worker serves on
            import traceback
            traceback.print_exc(file=sys.__stderr__)
        finally:
            try:
                if conn is None or not conn.taken:   # else the watchdog closes it
                    sock.close()
            except OSError:
                pass
        # The connection is closed, so any timeout answer has been flushed:
        # exit once draining and no execution still owes an answer.
        if reuse.drained():
            config.exit(config.EXIT_TAINTED)

    def _one(self, conn):
        """Reads and answers one request; False once the connection is done."""
        try:
            req = conn.read_request(config.MAX_BODY_BYTES)
        except Refused as e:
            try:
                _send(conn, e.status, _error(str(e)), close=True)
                conn.linger()
            except (Closed, OSError):
                pass
            return False
        except (Closed, OSError):   # gone, silent, or reset
            return False
        try:
            if self._route(conn, req):
                return True
            if req.body is None and req.length:   # refused before its body was read
                conn.linger()
        except (Closed, OSError):   # gone before its whole body came, or before its answer was written
            pass
        return False

    def _route(self, conn, req):
        """Answers req on conn; False if the connection must close."""
        if req.method == "GET":
            conn.read_body(req)   # none, as a rule: read all the same, to find the next request
            if req.path != "/ping":
                return _send(conn, 404, _error("not found"), keep=req.keep_alive)
            if reuse.draining():
                return _send(conn, 503, _error("worker draining"), close=True)
            return _send(conn, 200, _PONG, "text/plain; charset=utf-8", keep=req.keep_alive)
        refused = workertoken.refusal(req.path, req.header("x-qinling-worker-token"))
        if refused:
            return _send(conn, 403, _error(refused), close=True)   # before its body is read
        if req.path not in ("/execute", "/preload", "/package"):
            return _send(conn, 404, _error("not found"), close=True)
        conn.read_body(req)
        if req.path == "/execute":
            return self._execute(conn, req)
        if req.path == "/preload":
            return self._preload(conn, req)
        return _package(conn, req)

    def _execute(self, conn, req):
        if reuse.draining():
            return _send(conn, 503, _error("worker draining"), close=True)
        received = time.monotonic()
        try:
            job = parse_job(json.loads(req.body))
        except (ValueError, BadRequest) as e:   # JSONDecodeError is a ValueError
            return _send(conn, 400, _error("invalid request: %s" % e), keep=req.keep_alive)
        serving = package.serving()
        if serving is not None and (job.fid, job.version) != serving:
            # Our address was given to the engine for another function
            # (a reused pod IP): nothing runs, the engine looks elsewhere.
            return _send(conn, 410, _error("this worker serves function %s version %d" % serving),
                         keep=req.keep_alive)
        strict = self.strict
        if strict is not None:
            body, proc = strict.execute(job, req.body, received)
            try:
                return _send(conn, 200, body, keep=req.keep_alive)
            finally:
                strict.after_answer(proc)
        call = reuse.accept(job, conn)
        if call is None:   # checked again under its lock: draining may just have begun
            return _send(conn, 503, _error("worker draining"), close=True)
        owed = True
        try:
            body = reuse.execute(call)
            if body is None:   # timed out: the watchdog answered and closed the connection
                owed = False
                return False
            return _send(conn, 200, body, keep=req.keep_alive)
        finally:
            if owed:
                reuse.done()   # after the answer is written: draining waits for it

    def _preload(self, conn, req):
        try:
            spec = PreloadSpec(json.loads(req.body))
            if self.strict is None:   # reuse: modules are imported on the first call
                return _send(conn, 200, _json({"level": "reuse"}), keep=req.keep_alive)
            level, err = self.strict.preload(spec.level, spec, spec.timeout)
        except (ValueError, BadRequest) as e:
            return _send(conn, 400, _error("invalid request: %s" % e), keep=req.keep_alive)
        return _send(conn, 200, _json({"level": level, "error": err}), keep=req.keep_alive)


def _package(conn, req):
    from urllib.parse import parse_qs
    query = parse_qs(req.query)
    try:
        fid = query.get("function_id", [""])[0]
        version = int(query.get("function_version", ["0"])[0])
        if version < 0:
            raise ValueError("negative")
    except ValueError:
        return _send(conn, 400, _error("invalid request: function_version must be an integer"), keep=req.keep_alive)
    try:
        package.install_package(fid, version, query.get("md5", [""])[0], req.body)
    except package.PackageError as e:
        return _send(conn, e.status, _error(str(e)), keep=req.keep_alive)
    except OSError as e:
        return _send(conn, 500, _error("cannot store the package: %s" % e), keep=req.keep_alive)
    return _send(conn, 200, _json({"function_id": fid, "function_version": version}), keep=req.keep_alive)


def _json(obj):
    return json.dumps(obj).encode()


def _error(message):
    return _json({"error": message})


def _send(conn, status, body, ctype="application/json", close=False, keep=True):
    """Writes an answer; returns whether the connection stays open."""
    close = close or not keep or reuse.draining()
    conn.send(status, body, ctype, close)
    return not close


class PreloadSpec:
    """A /preload request: level, and the function as in /execute."""

    def __init__(self, req):
        if not isinstance(req, dict):
            raise BadRequest("request body must be a JSON object")
        job = parse_job(dict(req, execution_id="preload"))
        self.fid, self.version, self.entry, self.timeout = job.fid, job.version, job.entry, job.timeout
        self.level = req.get("level")


# Errors of accept() that a retry may outlive: out of descriptors or memory
# for a moment (a function under reuse may hold many), or a peer that left.
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def serve_forever(listener, handler):
    """Accepts connections on listener, each served by a thread of its own,
    until a signal handler raises SystemExit."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError as e:
            if e.errno in _TRANSIENT:
                time.sleep(0.05)
            continue
        if not _start_thread(handler.serve, sock):
            sock.close()


# How long serve_forever waits for a thread to serve a connection with, in
# steps (seconds): about 1.6 s in all.
THREAD_WAITS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)


def _start_thread(target, sock):
    """Starts a thread serving sock; False if none could be had. A function
    at its pids limit (a fork bomb whose processes are being killed after
    its call was answered) leaves none for a moment: refused at once, the
    engine's next call would find its connection closed and count the
    worker lost (seen in CI: the good call after a strict fork bomb)."""
    for wait in THREAD_WAITS + (None,):
        try:
            threading.Thread(target=target, args=(sock,), daemon=True).start()
            return True
        except RuntimeError:   # can't start new thread
            if wait is None:
                return False
            time.sleep(wait)
