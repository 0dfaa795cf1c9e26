"""Reuse isolation: every execution runs in a thread of this process
(upstream's warm reuse). A thread cannot be killed, so once a call times
out the worker drains: it answers what is running, then exits and is
replaced. A thread whose call returned in time waits for the next one:
starting a thread costs more CPU than the rest of a warm call."""

import contextvars
import threading
import time

from .execution import response_body, run, timeout_body

MAX_IDLE = 4         # execution threads kept for later calls (each counts against the pids limit)

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


class _Runner:
    """An execution thread: runs the jobs handed to it, one at a time, each
    in a fresh context (as a new thread would)."""

    def __init__(self):
        self._go = threading.Lock()
        self._go.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        self.job = None
        self.abandoned = False
        threading.Thread(target=self._loop, name="exec-idle", daemon=True).start()

    def hand(self, job):
        self.job = job
        self._go.release()

    def _loop(self):
        me = threading.current_thread()
        while True:
            self._go.acquire()
            job = self.job
            if job is None:   # not kept
                return
            me.name = "exec-" + job.eid
            contextvars.Context().run(run, job)
            self.job = None
            me.name = "exec-idle"
            self.done.release()
            if self.abandoned:   # its call timed out: the worker drains
                return


_idle = []   # runners waiting for a job (list.pop and append are atomic)


def execute(job):
    """Runs job in an execution thread with its timeout; returns (response
    JSON bytes, timed_out)."""
    global _draining
    try:
        runner = _idle.pop()
    except IndexError:
        runner = _Runner()
    start = time.monotonic()
    runner.hand(job)
    if not runner.done.acquire(timeout=min(job.timeout, threading.TIMEOUT_MAX)):
        # Threads cannot be killed: the worker is tainted and drains, then exits.
        runner.abandoned = True
        with _state_lock:
            _draining = True
        text, dropped = job.log.close()
        return timeout_body(job, time.monotonic() - start, text, dropped), True
    # job is final: its thread is done with it.
    if len(_idle) < MAX_IDLE:
        _idle.append(runner)
    else:
        runner.hand(None)
    text, dropped = job.log.close()
    return response_body(job.eid, job.ok, job.result, job.output, job.duration, text, dropped), False
