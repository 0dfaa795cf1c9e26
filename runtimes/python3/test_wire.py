"""Tests of the worker's HTTP/1.1 server (_qinling_runtime/wire.py) against a
real server.py: raw bytes in, the answers and whether the connection stays
open out. Every case must leave the worker serving.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import json
import socket
import threading
import time
import unittest

from harness import WorkerTest

EXECUTE = json.dumps({"execution_id": "wire", "function_id": "hello"}).encode()
PING = b"GET /ping HTTP/1.1\r\nHost: w\r\n\r\n"


def post(path, body, *headers):
    head = b"POST %s HTTP/1.1\r\nHost: w\r\n" % path.encode()
    head += b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def split_bytes(data):
    return [data[i:i + 1] for i in range(len(data))]


EXEC_REQ = post("/execute", EXECUTE)

# name, what is sent (bytes, or a list of pieces each sent on its own),
# the statuses answered in order, and whether the connection then stays open.
CASES = [
    ("pipelined keep-alive requests", [PING + EXEC_REQ + PING], [200, 200, 200], True),
    ("keep-alive one request after another", [PING, EXEC_REQ, PING], [200, 200, 200], True),
    ("body split over many recv()", [EXEC_REQ[:20]] + split_bytes(EXEC_REQ[20:]), [200], True),
    ("head split over many recv()", split_bytes(PING), [200], True),
    ("POST without Content-Length",
     [b"POST /execute HTTP/1.1\r\nHost: w\r\n\r\n" + EXECUTE], [400], False),
    ("Content-Length not a number",
     [b"POST /execute HTTP/1.1\r\nContent-Length: ten\r\n\r\n"], [400], False),
    ("Content-Length negative", [b"POST /execute HTTP/1.1\r\nContent-Length: -1\r\n\r\n"], [400], False),
    ("Content-Length with a sign", [b"POST /execute HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"], [400], False),
    ("Content-Length twice", [post("/execute", EXECUTE, b"Content-Length: 3")], [400], False),
    ("Content-Length huge", [b"POST /execute HTTP/1.1\r\nContent-Length: 1" + b"0" * 40 + b"\r\n\r\n"],
     [413], False),
    ("Content-Length just over 64 MiB",
     [b"POST /execute HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % ((64 << 20) + 1)], [413], False),
    ("chunked transfer-encoding",
     [b"POST /execute HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], [400], False),
    ("chunked beside a Content-Length",
     [post("/execute", EXECUTE, b"Transfer-Encoding: chunked")], [400], False),
    ("header flood", [b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(65)) + b"\r\n"],
     [431], False),
    ("header too long", [b"GET /ping HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n"], [431], False),
    ("headers endless, never a blank line", [b"GET /ping HTTP/1.1\r\n" + b"X-A: b\r\n" * 5000], [431], False),
    ("request line too long", [b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"], [414], False),
    ("request line endless", [b"GET /" + b"a" * 40000], [414], False),
    ("HTTP/1.0 closes", [b"GET /ping HTTP/1.0\r\n\r\n"], [200], False),
    ("HTTP/1.0 keep-alive", [b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", PING], [200, 200], True),
    ("HTTP/1.1 Connection: close", [b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n"], [200], False),
    ("HTTP/2.0", [b"GET /ping HTTP/2.0\r\n\r\n"], [505], False),
    ("version malformed", [b"GET /ping HTTP/1.1x\r\n\r\n"], [400], False),
    ("no version", [b"GET /ping\r\n\r\n"], [400], False),
    ("unknown method", [b"PUT /ping HTTP/1.1\r\nContent-Length: 0\r\n\r\n"], [501], False),
    ("lower-case method", [b"get /ping HTTP/1.1\r\n\r\n"], [501], False),
    ("unknown GET path", [b"GET /nope HTTP/1.1\r\n\r\n", PING], [404, 200], True),
    ("unknown POST path", [post("/nope", b"{}")], [404], False),
    ("absolute-form target", [b"GET http://w/ping HTTP/1.1\r\n\r\n"], [400], False),
    ("double space in the request line", [b"GET  /ping HTTP/1.1\r\n\r\n"], [400], False),
    ("binary garbage", [b"\x00\x01\x02\xff\r\n\r\n"], [400], False),
    ("TLS hello", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"], [400], False),
    ("header without colon", [b"GET /ping HTTP/1.1\r\nNoColon\r\n\r\n"], [400], False),
    ("space before the colon", [b"GET /ping HTTP/1.1\r\nHost : w\r\n\r\n"], [400], False),
    ("folded header", [b"GET /ping HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n"], [400], False),
    ("control character in a header", [b"GET /ping HTTP/1.1\r\nX-A: b\x00c\r\n\r\n"], [400], False),
    ("bare LF line ends", [b"GET /ping HTTP/1.1\nHost: w\n\nGET /ping HTTP/1.1\r\n\r\n"], [400], False),
    ("malformed JSON keeps the connection", [post("/execute", b"{not json"), PING], [400, 200], True),
]


class WireTest(WorkerTest):
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)   # a server that never answers fails the case, late
        s.connect(self.w.sock)
        self.addCleanup(s.close)
        return s

    def read_answer(self, s, buf):
        """One answer from s: (status, headers, body, rest of buf), or None
        if the connection closed first."""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                self.assertEqual(buf, b"", "a partial answer")
                return None
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        self.assertEqual(version, "HTTP/1.1")
        headers = dict((k.lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:]))
        n = int(headers["content-length"])
        while len(buf) < n:
            data = s.recv(65536)
            self.assertTrue(data, "the answer's body ends early")
            buf += data
        return int(status), headers, buf[:n], buf[n:]

    def closed(self, s, buf):
        """True once the server closed s (nothing more arrives), False if a
        further /ping is answered on it."""
        s.sendall(PING)
        got = self.read_answer(s, buf)
        return got is None

    def test_cases(self):
        for name, pieces, statuses, stays_open in CASES:
            with self.subTest(name):
                s = self.connect()
                for piece in pieces:
                    s.sendall(piece)
                    if len(pieces) > 3:
                        time.sleep(0.001)   # each piece a recv() of its own, most likely
                got, buf = [], b""
                for _ in statuses:
                    answer = self.read_answer(s, buf)
                    self.assertIsNotNone(answer, "answers so far: %s" % got)
                    status, headers, body, buf = answer
                    got.append(status)
                    if status != 200 or headers["content-type"] == "application/json":
                        json.loads(body)   # every error is the protocol's JSON
                self.assertEqual(got, statuses)
                if stays_open:
                    self.assertFalse(self.closed(s, buf), "the connection stays open")
                else:
                    self.assertEqual(headers.get("connection"), "close", "a closing answer says so")
                    try:
                        self.assertTrue(self.closed(s, buf), "the connection is closed")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                self.assertEqual(self.w.request("GET", "/ping"), (200, b"pong"))

    def test_client_closes_mid_body(self):
        s = self.connect()
        s.sendall(EXEC_REQ[:-10])
        s.shutdown(socket.SHUT_WR)
        self.assertIsNone(self.read_answer(s, b""), "nothing ran, nothing is answered")
        self.assertEqual(self.w.execute("hello")["output"], "Hello, World")

    def test_client_closes_mid_head(self):
        s = self.connect()
        s.sendall(b"POST /execute HTTP/1.1\r\nContent-Len")
        s.shutdown(socket.SHUT_WR)
        status, _, body, _ = self.read_answer(s, b"")
        self.assertEqual((status, json.loads(body)), (400, {"error": "incomplete request"}))
        self.assertEqual(self.w.execute("hello")["output"], "Hello, World")

    def test_client_resets_before_its_answer(self):
        s = self.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(post("/execute", json.dumps({"execution_id": "gone", "function_id": "sleepy",
                                               "input": {"seconds": 0.3}}).encode()))
        s.close()
        self.assertEqual(self.w.execute("hello")["output"], "Hello, World")

    def test_slowloris_does_not_block_others(self):
        stalled = []
        for _ in range(20):
            s = self.connect()
            s.sendall(EXEC_REQ[:len(EXEC_REQ) // 2])
            stalled.append(s)
        head_only = self.connect()
        head_only.sendall(b"GET /ping HTTP/1.1\r\nHost: w\r\n")
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.w.execute("hello")["output"]))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["Hello, World"] * 4)
        # The stalled ones are still there and, completed, answered.
        s = stalled[0]
        s.sendall(EXEC_REQ[len(EXEC_REQ) // 2:])
        status, _, body, _ = self.read_answer(s, b"")
        self.assertEqual((status, json.loads(body)["output"]), (200, "Hello, World"))

    def tearDown(self):
        self.w.err.seek(0)
        self.assertNotIn("Traceback", self.w.err.read(), "no thread raised")


class NoThreadTest(unittest.TestCase):
    """A connection that finds no thread to serve it (the worker's pids
    cgroup full for a moment) waits for one rather than being closed
    unanswered, which the engine would take for a lost worker."""

    def start_failing(self, failures):
        from _qinling_runtime import httpserver
        real, calls = threading.Thread.start, []

        def start(thread):
            calls.append(thread)
            if len(calls) <= failures:
                raise RuntimeError("can't start new thread")
            real(thread)
        self.addCleanup(setattr, threading.Thread, "start", real)
        threading.Thread.start = start
        self.addCleanup(setattr, httpserver, "THREAD_WAITS", httpserver.THREAD_WAITS)
        httpserver.THREAD_WAITS = (0.001,) * 3
        served = threading.Event()
        ok = httpserver._start_thread(lambda sock: served.set(), None)
        return ok, ok and served.wait(5), len(calls)

    def test_thread_found_after_failures(self):
        for name, failures, want_ok, want_calls in [
            ("at once", 0, True, 1),
            ("after one failure", 1, True, 2),
            ("on the last try", 3, True, 4),
            ("never: refused", 4, False, 4),
        ]:
            with self.subTest(name):
                ok, served, calls = self.start_failing(failures)
                self.assertEqual(ok, want_ok)
                self.assertEqual(served, want_ok)
                self.assertEqual(calls, want_calls)
                self.doCleanups()
