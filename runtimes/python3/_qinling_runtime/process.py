"""Strict isolation: the body of an execution process, forked from a zygote
(or started as a fresh interpreter), and the framing of its channel to the
server."""

import json
import os
import socket
import struct
import time

from . import config
from .compat import text_of
from .confinement import child_signals, confine
from .execution import Job, accepts_context, parse_job, resolve, response_body, run
from .output import LOG_HEADER, SharedLog, current

FRAME = struct.Struct("<I")   # length prefix on an execution process's channel
READY = struct.Struct("<ci")  # b"R", pid


def frame(data):
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


def recv_frame(sock, limit, deadline=None):
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


preloaded = None   # (function_id, version, entry) imported by a function zygote
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
    token = current.set(log)
    start = time.monotonic()
    try:
        print("warm", 1, 2.5, {"a": None})
        if preloaded:   # find (not call) the real entry
            fid, version, entry = preloaded
            accepts_context(resolve(Job("warm", fid, version, entry, (), {}, 1)))
        func = _noop
        if accepts_context(func):
            job.kwargs["context"] = {"os_session": None}
        job.result = func(*job.args, **job.kwargs)
    except BaseException:
        pass
    finally:
        current.reset(token)
    text, dropped = log.close()
    body = response_body(job.eid, True, job.result, None, time.monotonic() - start, text, dropped,
                         timing={"import_ms": 0.0})
    frame(body)
    with log.lock:   # back to empty for the real execution
        log.size = log.dropped = 0
        log.closed = False
        log._commit()


def prewarm(rounds=20):
    """Run by a zygote before it forks execution processes: runs their own
    code (_warm's execution path, their channel's framing) with stand-ins
    until CPython's adaptive interpreter has quickened and specialised it
    and the type cache holds its lookups. Every process forked afterwards
    inherits that: otherwise each one did it again, writing to (and so
    copying, at ~3 us a page fault) the page of every code object it ran,
    ~45 of its ~500 copied pages (docs/benchmarks.md, "Strict isolation on
    a machine with cheap address spaces"). Runtime code only: the preloaded
    entry is looked up, never called (as in _warm). The log's memory file
    and the socketpair are closed again before anything is forked, so no
    execution shares them."""
    fd = os.memfd_create("qinling-warm", os.MFD_CLOEXEC)
    a, b = socket.socketpair()
    log = None
    try:
        os.ftruncate(fd, LOG_HEADER.size + config.MAX_LOG_BYTES)
        log = SharedLog(fd, config.MAX_LOG_BYTES)
        for _ in range(rounds):
            _warm(log)
            chan = socket.socket(fileno=os.dup(b.fileno()))
            chan.sendall(READY.pack(b"R", 0))
            a.recv(READY.size, socket.MSG_WAITALL)
            a.sendall(frame(_WARM))
            recv_frame(chan, config.MAX_BODY_BYTES)
            chan.close()
    finally:
        if log is not None:
            log.mm.close()
        a.close()
        b.close()
        os.close(fd)


def process_main(chan_fd, log_fd, conf, parent_ctl=None, warm=False):
    """Body of an execution process: confine itself, say it is ready, run the
    one request it gets, answer, then wait to be killed. Never returns."""
    child_signals()
    if parent_ctl is not None:   # the zygote's control socket
        os.close(parent_ctl.detach())
    chan = socket.socket(fileno=chan_fd)
    try:
        confine(conf, {chan_fd, log_fd})
        log = SharedLog(log_fd, config.MAX_LOG_BYTES)
        if warm:
            _warm(log)
        conf.join_cpu()
    except BaseException as e:
        msg = ("%s: %s" % (type(e).__name__, text_of(e))).encode()
        try:
            chan.sendall(b"E" + frame(msg))
        finally:
            os._exit(1)
    me = os.getpid()
    try:
        chan.sendall(READY.pack(b"R", me))
    except OSError:   # retired before it was ready: the server closed its end
        os._exit(0)
    try:
        raw = recv_frame(chan, config.MAX_BODY_BYTES)
    except (OSError, ValueError):
        raw = None
    if raw is None:   # retired before use
        os._exit(0)
    job = parse_job(json.loads(raw))   # validated by the server already
    job.log = log
    run(job)
    if os.getpid() != me:   # a process the function forked came back here
        os._exit(0)
    text, dropped = log.close()
    body = response_body(job.eid, job.ok, job.result, job.output, job.duration, text, dropped,
                         timing={"import_ms": round(job.resolve * 1000, 3)})
    try:
        chan.sendall(frame(body))
        chan.recv(1)   # the server kills this process group once it has the answer
    finally:
        os._exit(0)
