"""Options of this worker, set once by cli.main before anything runs, and
how it exits. Other modules read them as config.NAME at call time."""

import os
import sys

EXIT_TAINTED = 3            # a timed-out call is still running: Go replaces us
EXIT_ZYGOTE_LOST = 4        # strict: the zygote died, no execution can start
MAX_BODY_BYTES = 64 << 20   # refuse absurd request bodies instead of buffering them

SERVER = None               # the server.py that started this process (a fresh interpreter runs it again)
PACKAGES_DIR = "/var/qinling/packages"
MAX_LOG_BYTES = 1 << 20
MAX_RESULT_BYTES = 1 << 20
SOCKET_PATH = None
SOCKET_INODE = None
LISTEN_FD = None            # the listening socket inherited from the engine, if so


def remove_socket():
    try:   # only our own socket: a replacement worker may reuse the path
        if SOCKET_PATH and os.stat(SOCKET_PATH).st_ino == SOCKET_INODE:
            os.unlink(SOCKET_PATH)
    except OSError:
        pass


def exit(code):
    remove_socket()
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)   # don't wait for function threads that may never end
