"""Command line and start: options, the server's main, and the entry of a
fresh interpreter started for one strict execution (level none)."""

import os
import signal
import socket
import sys
import threading

from . import config, package, workertoken
from .compat import lift_limits
from .output import Router, start_in_context

USAGE = ("usage: server.py (--listen-fd N | --socket PATH | [--host 127.0.0.1] --port N) [--worker NAME] "
         "[--packages-dir DIR] [--max-log-bytes N] [--max-result-bytes N] "
         "[--isolation reuse|strict] [--spares N] [--tmp-size BYTES] [--cpu-cgroup PROCS_FILE]")


def parse_args(argv):
    opts = {"socket": None, "listen-fd": None, "worker": "", "host": "127.0.0.1", "port": None,
            "packages-dir": os.environ.get("QINLING_PACKAGES_DIR") or "/var/qinling/packages",
            "max-log-bytes": "1048576", "max-result-bytes": "1048576",
            "isolation": "reuse", "spares": "2", "tmp-size": str(64 << 20), "cpu-cgroup": "",
            # Internal: how the server starts a fresh execution process (level none).
            "execution-process": None, "protect": "", "hide": ""}
    flags = {"execution-process"}
    it = iter(argv)
    try:   # hand-rolled: argparse alone costs more import time than the rest
        for arg in it:
            if arg in ("-h", "--help"):
                print(USAGE)
                sys.exit(0)
            name, eq, value = arg.partition("=")
            if not name.startswith("--") or name[2:] not in opts:
                raise ValueError("unknown option %s" % name)
            opts[name[2:]] = "1" if name[2:] in flags else (value if eq else next(it))
        for key in ("port", "listen-fd", "max-log-bytes", "max-result-bytes", "spares", "tmp-size"):
            if opts[key] is not None and int(opts[key]) < 0:
                raise ValueError("%s must not be negative" % key)
        if opts["isolation"] not in ("reuse", "strict"):
            raise ValueError("--isolation must be reuse or strict")
        if opts["socket"] is None and opts["port"] is None and opts["listen-fd"] is None \
                and not opts["execution-process"]:
            raise ValueError("--listen-fd, --socket or --port is required")
    except (StopIteration, ValueError) as e:
        sys.stderr.write("%s\nserver.py: error: %s\n" % (USAGE, str(e) or "option needs a value"))
        sys.exit(2)
    return opts


def _fresh_process(opts):
    """A fresh interpreter started for one execution (strict, level none)."""
    from .confinement import Confinement
    from .process import process_main
    protect = [int(p) for p in opts["protect"].split(",") if p]
    conf = Confinement(int(opts["tmp-size"]), opts["hide"] or None, protect, opts["cpu-cgroup"] or None)
    process_main(3, 4, conf)


def main(argv, server):
    """Runs the worker; server is the path of the server.py started."""
    opts = parse_args(argv)
    config.SERVER = os.path.abspath(server)
    config.PACKAGES_DIR = os.path.abspath(opts["packages-dir"])
    config.MAX_LOG_BYTES, config.MAX_RESULT_BYTES = int(opts["max-log-bytes"]), int(opts["max-result-bytes"])
    package.load_serving()
    workertoken.setup()
    lift_limits()   # before the zygote forks: it and all it forks inherit this

    # Functions must not import this server's directory as a package of theirs.
    here = os.path.dirname(config.SERVER)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.stdout, sys.stderr = Router(sys.__stdout__), Router(sys.__stderr__)
    threading.Thread.start = start_in_context
    if opts["execution-process"]:
        _fresh_process(opts)

    if opts["socket"]:
        config.SOCKET_PATH = os.path.abspath(opts["socket"])
    if opts["listen-fd"] is not None:
        # The engine's socket (orchestrator/local/launch.go): no child of
        # this process inherits it, and the zygote closes its copy.
        config.LISTEN_FD = int(opts["listen-fd"])
        os.set_inheritable(config.LISTEN_FD, False)
    strict = None
    if opts["isolation"] == "strict":
        # Before the listening socket exists and before any thread starts (the
        # zygote must inherit neither), and before the HTTP modules load (the
        # smaller the zygote, the cheaper each fork and exit).
        from .strict import NoProcess, Strict   # with what the zygote runs: imported before it forks
        strict = Strict(int(opts["spares"]), int(opts["tmp-size"]), opts["cpu-cgroup"] or None)
        try:
            strict.start()
        except (NoProcess, OSError) as e:
            sys.__stderr__.write("server.py: error: strict isolation is not available here: %s\n" % e)
            sys.__stderr__.flush()
            os._exit(2)
    from .httpserver import Handler, serve_forever
    if config.LISTEN_FD is not None:
        listener = socket.socket(fileno=config.LISTEN_FD)
        where = "descriptor %d (%s)" % (config.LISTEN_FD, opts["worker"] or "inherited")
    elif config.SOCKET_PATH:
        try:   # a stale socket from a dead worker would make bind fail
            import stat
            if stat.S_ISSOCK(os.lstat(config.SOCKET_PATH).st_mode):
                os.unlink(config.SOCKET_PATH)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(config.SOCKET_PATH)
        config.SOCKET_INODE = os.stat(config.SOCKET_PATH).st_ino
        where = "unix:" + config.SOCKET_PATH
    else:
        listener = socket.socket(socket.AF_INET6 if ":" in opts["host"] else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((opts["host"], int(opts["port"])))
        where = "%s:%d" % listener.getsockname()[:2]
    listener.setblocking(True)
    listener.listen(128)   # a full unix-socket backlog makes clients fail with EAGAIN

    def on_signal(signum, frame):
        raise SystemExit(0)   # unwinds serve_forever in the main thread
    if os.getpid() != 1:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    else:
        # PID 1 of the sandbox: the kernel drops signals it has no handler for,
        # so nothing inside can stop it; the engine stops it with SIGKILL.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.__stderr__.write("qinling python3 runtime listening on %s (isolation %s)\n" % (where, opts["isolation"]))
    sys.__stderr__.flush()
    try:
        serve_forever(listener, Handler(strict))
    except SystemExit:
        pass
    listener.close()
    config.exit(0)

