"""Output capture: what an execution prints goes to its own log, kept up to
a cap (in a memory file shared with the server in strict mode)."""

import contextvars
import os
import struct
import threading

# Log buffer of the execution running in the current context (None = server code).
current = contextvars.ContextVar("qinling_log", default=None)


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
        log = current.get()
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


def start_in_context(self):
    # New threads start with an empty contextvars context; carry the execution's
    # context over so output of threads a function starts lands in its log.
    if current.get() is not None:
        ctx, run = contextvars.copy_context(), self.run
        self.run = lambda: ctx.run(run)
    _thread_start(self)
