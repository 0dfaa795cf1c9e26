"""Reuse isolation: every execution runs in a thread of this process
(upstream's warm reuse). A thread cannot be killed, so once a call times
out the worker drains: it answers what is running, then exits and is
replaced."""

import threading
import time

from .execution import response_body, run, timeout_body

_state_lock = threading.Lock()
_draining = False    # set once a call timed out; never cleared
_active = 0          # /execute requests whose response is not yet written


def draining():
    return _draining


def accept():
    """Counts an /execute request in; False (not counted) once draining."""
    global _active
    with _state_lock:
        if _draining:
            return False
        _active += 1
        return True


def done():
    """Counts an accepted request out."""
    global _active
    with _state_lock:
        _active -= 1


def drained():
    """True once draining and no execution owes a response: the worker exits."""
    with _state_lock:
        return _draining and _active == 0


def execute(job):
    """Runs job in a thread with its timeout; returns (response JSON bytes,
    timed_out)."""
    global _draining
    t = threading.Thread(target=run, args=(job,), name="exec-" + job.eid, daemon=True)
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
