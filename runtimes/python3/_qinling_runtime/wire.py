"""HTTP/1.1 on a stream socket, as the engine speaks it to a worker
(README.md, "HTTP"): requests with a Content-Length body or none, keep-alive,
and nothing else. Strict and bounded, since a pod's server faces whatever
the pod network sends before the worker token is checked: a request that is
malformed, too large or framed otherwise (chunked) is answered with an error
and its connection closed; no connection can hold more than its own thread.

Only the socket module: http.server and its email, http.client, mimetypes
imports cost a worker 3–4 MiB of PSS and a fraction of a millisecond per
call (docs/benchmarks.md, "Fourth round")."""

import re
import socket
import struct

MAX_LINE = 8192          # request line, and each header line
MAX_HEAD = 32768         # request line and headers together
MAX_HEADERS = 64         # header lines
IDLE_TIMEOUT = 300       # seconds a kept-alive connection may wait for its next request (in REQUEST_TIMEOUT slices)
REQUEST_TIMEOUT = 60     # seconds a started request may go without a byte arriving
RECV = 65536
LINGER_RECVS, LINGER_TIMEOUT = 16, 1   # at most 1 MiB, a second without any
_SEP = b"\r\n\r\n"
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(%s) (/[!-~]*) (HTTP/[0-9]\.[0-9])" % _TOKEN)
# A field value: visible characters, spaces and tabs inside, no controls.
_HEADER = re.compile(rb"(%s):[ \t]*((?:[!-~\x80-\xff]+(?:[ \t]+[!-~\x80-\xff]+)*)?)[ \t]*" % _TOKEN)
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            410: "Gone", 413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class Refused(Exception):
    """A request this server does not take: answered with status and
    message, then the connection is closed."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Closed(Exception):
    """The peer closed, or went silent, where no answer is owed."""


class Request:
    __slots__ = ("method", "target", "path", "query", "headers", "length", "body", "keep_alive")

    def header(self, name):
        """The value of header name (lower case), or None."""
        return self.headers.get(name)


class Connection:
    """One accepted connection: reads requests, writes answers."""

    def __init__(self, sock):
        # A blocking socket with the kernel's timeouts (SO_RCVTIMEO and
        # SO_SNDTIMEO), set once: Python's own timeout would cost a poll
        # before every recv and send, and an ioctl at every change between
        # the idle and the request timeout (docs/benchmarks.md, "The warm
        # path: hand-overs").
        self.sock = sock
        self.buf = b""
        self.taken = False   # reuse.py's watchdog answers on it, and closes it
        sock.setblocking(True)
        self._set_timeouts(REQUEST_TIMEOUT)

    def _set_timeouts(self, seconds):
        self.slice = seconds
        tv = struct.pack("ll", seconds, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    def _recv(self, timeout, size=RECV):
        """Bytes from the peer; b"" once it closed, None after timeout
        seconds without any (waited in slices of the kernel's timeout)."""
        waited = 0
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:   # a slice passed without a byte
                waited += self.slice
                if waited >= timeout:
                    return None

    def _head(self):
        """The request's head (up to the blank line), the rest kept in buf."""
        buf = self.buf
        while True:
            end = buf.find(_SEP)
            if end >= 0:
                self.buf = buf[end + 4:]
                return buf[:end]
            if len(buf) > MAX_LINE and buf.find(b"\r\n", 0, MAX_LINE + 2) < 0:
                raise Refused(414, "request line too long")
            if len(buf) > MAX_HEAD:
                raise Refused(431, "request headers too large")
            data = self._recv(REQUEST_TIMEOUT if buf else IDLE_TIMEOUT)
            if not data:
                if not buf:   # closed or idle between requests: nothing is owed
                    raise Closed()
                if data is None:   # half a request, then silence
                    raise Refused(408, "request not completed within %d s" % REQUEST_TIMEOUT)
                raise Refused(400, "incomplete request")
            buf += data

    def read_request(self, max_body):
        """The next request's head (its body is read by read_body); Closed
        once the peer is gone or idle too long, Refused for anything this
        server does not take."""
        head = self._head()
        if len(head) > MAX_HEAD:
            raise Refused(431, "request headers too large")
        lines = head.split(b"\r\n")
        req = Request()
        req.method, req.target, version = _request_line(lines[0])
        req.headers = _headers(lines[1:])
        conn = req.headers.get("connection", "").lower()
        if version == b"HTTP/1.1":
            req.keep_alive = conn != "close"
        else:   # HTTP/1.0: closes unless asked otherwise
            req.keep_alive = conn == "keep-alive"
        if "transfer-encoding" in req.headers:
            raise Refused(400, "Transfer-Encoding is not supported: send a Content-Length body")
        length = req.headers.get("content-length")
        if length is None:
            if req.method == "POST":
                raise Refused(400, "Content-Length required")
            n = 0
        else:
            if not (length.isascii() and length.isdigit()):
                raise Refused(400, "invalid Content-Length")
            if len(length) > 18 or int(length) > max_body:
                raise Refused(413, "request body too large")
            n = int(length)
        req.length, req.body = n, None
        req.path, _, req.query = req.target.partition("?")
        return req

    def read_body(self, req):
        """Reads req's body into req.body; Closed if the peer leaves first."""
        n, buf = req.length, self.buf
        if len(buf) >= n:
            self.buf = buf[n:]
            req.body = buf[:n]
            return
        parts, have = [buf], len(buf)
        while have < n:
            data = self._recv(REQUEST_TIMEOUT, min(n - have, 1 << 20))
            if not data:   # gone mid-body, or stalled: nothing ran, nothing is owed
                raise Closed()
            parts.append(data)
            have += len(data)
        self.buf = b""
        req.body = b"".join(parts)

    def linger(self):
        """Before closing on a refused request: reads (and drops) what the
        peer still sends, for a moment, so that it can finish sending and
        read the answer (closing with unread data would reset the
        connection)."""
        self.sock.shutdown(socket.SHUT_WR)
        self._set_timeouts(LINGER_TIMEOUT)
        for _ in range(LINGER_RECVS):
            if not self._recv(LINGER_TIMEOUT):
                return

    def send(self, status, body, ctype="application/json", close=False):
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (status, _REASONS.get(status, "Unknown"), ctype, len(body),
                   "Connection: close\r\n" if close else "")).encode()
        if len(body) <= RECV:
            self.sock.sendall(head + body)
        else:   # not copied into one buffer
            self.sock.sendall(head)
            self.sock.sendall(body)


def _request_line(line):
    if len(line) > MAX_LINE:
        raise Refused(414, "request line too long")
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise Refused(400, "malformed request line")
    method, target, version = m.groups()
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Refused(505, "HTTP version not supported")
    if method not in (b"GET", b"POST"):
        raise Refused(501, "method not supported")
    return method.decode(), target.decode(), version


def _headers(lines):
    if len(lines) > MAX_HEADERS:
        raise Refused(431, "too many request headers")
    headers = {}
    for line in lines:
        if len(line) > MAX_LINE:
            raise Refused(431, "request header too long")
        m = _HEADER.fullmatch(line)
        if m is None:
            raise Refused(400, "malformed request header")
        name, value = m.groups()
        key, text = name.decode().lower(), value.decode("latin-1")
        if key in headers:
            if key in ("content-length", "transfer-encoding", "host", "x-qinling-worker-token"):
                raise Refused(400, "repeated request header %s" % name.decode())
            headers[key] += ", " + text
        else:
            headers[key] = text
    return headers
