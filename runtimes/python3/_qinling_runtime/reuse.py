"""Reuse isolation: every execution runs in the thread that read its
request (upstream's warm reuse), in a fresh contextvars context. One
watchdog thread answers a call that passes its timeout: a thread cannot be
killed, so the worker then drains (it answers what is running, then exits
and is replaced), and the late result is dropped.

Handing each call to an execution thread and back cost two wake-ups of
another thread per call, and the GIL moving with them (docs/benchmarks.md,
"The warm path: hand-overs"). The watchdog wakes only when a deadline may
have passed: it sleeps until the earliest deadline it knows of, and is
woken early only by a call due before that; a call that returns in time
does not wake it, and an idle worker's watchdog sleeps without a timeout."""

import contextvars
import socket
import sys
import threading
import time

from . import config
from .execution import response_body, run, timeout_body

_lock = threading.Lock()
_due = threading.Condition(_lock)   # the watchdog waits on it
_draining = False    # set once a call timed out; never cleared
_active = 0          # /execute requests whose response is not yet written
_calls = {}          # Call -> None: running calls nobody has answered yet
_wake_at = None      # the deadline the watchdog sleeps until (None: none)
_watchdog = None     # its thread, started with the first call


class Call:
    """An accepted /execute request: answered by whoever takes it out of
    _calls first, the thread running it or the watchdog."""

    __slots__ = ("job", "conn", "start", "deadline")

    def __init__(self, job, conn, start):
        self.job, self.conn, self.start = job, conn, start
        self.deadline = start + job.timeout


def draining():
    return _draining


def accept(job, conn):
    """Counts an /execute request in and under watch; None (not counted)
    once draining."""
    global _active, _wake_at, _watchdog
    call = Call(job, conn, time.monotonic())
    with _lock:
        if _draining:
            return None
        if _watchdog is None:   # started here, not at import: the server forks nothing after this
            _watchdog = threading.Thread(target=_watch, name="watchdog", daemon=True)
            _watchdog.start()   # RuntimeError (no thread to be had): this connection ends
        _active += 1
        _calls[call] = None
        if _wake_at is None or call.deadline < _wake_at:
            _wake_at = call.deadline
            _due.notify()
    return call


def done():
    """Counts an accepted request out, once its answer is written."""
    global _active
    with _lock:
        _active -= 1


def drained():
    """True once draining and no execution owes a response: the worker exits."""
    with _lock:
        return _draining and _active == 0


def _take(call):
    """True if call was still unanswered: the caller now answers it."""
    with _lock:
        return _calls.pop(call, 0) is None


def execute(call):
    """Runs call's job in this thread; returns the response JSON bytes, or
    None if the watchdog answered it (timed out: its result is dropped)."""
    job = call.job
    try:
        contextvars.Context().run(run, job)
    except BaseException:   # run catches everything a function raises: a bug of ours
        if _take(call):
            raise
        return None
    if not _take(call):
        return None
    text, dropped = job.log.close()
    return response_body(job.eid, job.ok, job.result, job.output, job.duration, text, dropped)


def _watch():
    """The watchdog's body: answers calls past their deadline."""
    global _wake_at, _draining, _active
    with _lock:
        while True:
            now = time.monotonic()
            late = [c for c in _calls if c.deadline <= now]
            if not late:
                _wake_at = min((c.deadline for c in _calls), default=None)
                _due.wait(None if _wake_at is None else min(_wake_at - now, threading.TIMEOUT_MAX))
                continue
            for call in late:
                del _calls[call]
                call.conn.taken = True   # its thread must not close it under our answer
            _draining = True   # threads cannot be killed: the worker is tainted
            _lock.release()
            try:
                for call in late:
                    _answer_late(call)
            finally:
                _lock.acquire()
            _active -= len(late)
            if _active == 0:   # every answer owed is written
                config.exit(config.EXIT_TAINTED)


def _answer_late(call):
    """Writes the timeout answer of call, whose function still runs, and
    closes its connection."""
    job = call.job
    try:
        text, dropped = job.log.close()
        body = timeout_body(job, time.monotonic() - call.start, text, dropped)
        call.conn.send(200, body, close=True)
    except (OSError, ValueError):   # the peer left, or the function closed the socket
        pass
    except Exception:   # a bug of ours: the watchdog must live on
        import traceback
        traceback.print_exc(file=sys.__stderr__)
    try:
        call.conn.sock.shutdown(socket.SHUT_RDWR)   # the stuck thread may still hold it
        call.conn.sock.close()
    except OSError:
        pass
