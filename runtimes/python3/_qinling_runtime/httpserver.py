"""The worker's HTTP API (README.md): /ping, /execute, /package, /preload."""

import json
import socket
import time

from . import config, package, reuse, workertoken
from .execution import BadRequest, parse_job


def http_classes(strict):
    """The HTTP server classes, serving executions in strict (a Strict) or,
    if None, in reuse isolation. Imported after a strict server's zygote
    forks: the zygote need not carry http.server."""
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
            if close or reuse.draining():
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
            if reuse.draining():
                return self.send_json(503, {"error": "worker draining"}, close=True)
            self.send(200, b"pong", "text/plain; charset=utf-8")

        def body(self):
            """The request body, or None once an error has been answered."""
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.send_json(400, {"error": "Content-Length required"}, close=True)
                return None
            if not 0 <= length <= config.MAX_BODY_BYTES:
                self.send_json(413, {"error": "request body too large"}, close=True)
                return None
            return self.rfile.read(length)

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            refused = workertoken.refusal(path, self.headers.get(workertoken.HEADER))
            if refused:
                return self.send_json(403, {"error": refused}, close=True)
            if path == "/preload":
                return self.preload()
            if path == "/package":
                return self.package()
            if path != "/execute":
                return self.send_json(404, {"error": "not found"}, close=True)
            if reuse.draining():
                return self.send_json(503, {"error": "worker draining"}, close=True)
            received = time.monotonic()
            raw = self.body()
            if raw is None:
                return
            try:
                job = parse_job(json.loads(raw))
            except (ValueError, BadRequest) as e:   # JSONDecodeError is a ValueError
                return self.send_json(400, {"error": "invalid request: %s" % e})
            serving = package.serving()
            if serving is not None and (job.fid, job.version) != serving:
                # Our address was given to the engine for another function
                # (a reused pod IP): nothing runs, the engine looks elsewhere.
                return self.send_json(410, {"error": "this worker serves function %s version %d" % serving})
            if strict is not None:
                body, proc = strict.execute(job, raw, received)
                try:
                    return self.send(200, body)
                finally:
                    strict.finish_soon(proc)
            if not reuse.accept():   # checked again under its lock: draining may just have begun
                return self.send_json(503, {"error": "worker draining"}, close=True)
            try:
                body, timed_out = reuse.execute(job)
                self.send(200, body, close=timed_out)
            finally:
                reuse.done()

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
                package.install_package(fid, version, query.get("md5", [""])[0], raw)
            except package.PackageError as e:
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
                if strict is None:   # reuse: modules are imported on the first call
                    return self.send_json(200, {"level": "reuse"})
                level, err = strict.preload(spec.level, spec, spec.timeout)
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
            if reuse.drained():
                config.exit(config.EXIT_TAINTED)

    class UnixServer(Server):
        address_family = socket.AF_UNIX

    return Handler, Server, UnixServer


class PreloadSpec:
    """A /preload request: level, and the function as in /execute."""

    def __init__(self, req):
        if not isinstance(req, dict):
            raise BadRequest("request body must be a JSON object")
        job = parse_job(dict(req, execution_id="preload"))
        self.fid, self.version, self.entry, self.timeout = job.fid, job.version, job.entry, job.timeout
        self.level = req.get("level")
