"""Shared by the runtime's tests (test_*.py): a real server.py on a temp
unix socket, the functions they run, and helpers."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")

# function_id -> {relative file name: source}
PACKAGES = {
    "hello": {"main.py": (
        "def main(name='World', **kwargs):\n"
        "    print('Hello, %s' % name)\n"
        "    return 'Hello, %s' % name\n")},
    "positional": {"main.py": (
        "def main(name, **kwargs):\n"
        "    return 'Hello, %s' % name\n")},
    "mutual": {
        "pkg_a.py": "import pkg_b\nVALUE = 'a'\ndef main():\n    return pkg_b.both()\n",
        "pkg_b.py": "import pkg_a\ndef both():\n    return pkg_a.VALUE + 'b'\n"},
    "nested": {"lib/__init__.py": "", "lib/handlers.py": "def run():\n    return 'nested'\n"},
    "raises": {"main.py": (
        "def helper():\n    raise ValueError('bad input value')\n"
        "def main():\n    print('before')\n    helper()\n"
        "def empty():\n    raise RuntimeError()\n"
        "def sysexit():\n    import sys; sys.exit(4)\n")},
    "badresult": {"main.py": (
        "def main():\n    return {1, 2}\n"
        "def nan():\n    return float('nan')\n"
        "def big():\n    return 'x' * (2 * 1024 * 1024)\n"
        "not_callable = 42\n")},
    "broken": {"main.py": "import does_not_exist_anywhere\n"},
    "noisy": {"main.py": (
        "import sys\n"
        "def main():\n"
        "    chunk = 'y' * (1024 * 1024)\n"
        "    for _ in range(5):\n        sys.stdout.write(chunk)\n"
        "    return 'done'\n")},
    "sleepy": {"main.py": (
        "import time, threading\n"
        "def main(seconds, tag='', **kwargs):\n"
        "    for i in range(3):\n"
        "        print('%s line %d' % (tag, i))\n"
        "        time.sleep(seconds / 3.0)\n"
        "    return tag\n"
        "def threaded():\n"
        "    t = threading.Thread(target=lambda: print('from child thread'))\n"
        "    t.start(); t.join()\n"
        "    import logging; logging.getLogger('x').warning('logged warning')\n"
        "    return 'ok'\n")},
    "ctx": {"main.py": (
        "def plain(name):\n    return name\n"
        "def explicit(context, name='n'):\n    return sorted(context)\n"
        "def kw(**kwargs):\n    return sorted(kwargs)\n")},
    # The modules of an HTTP server loaded where the function runs.
    "modules": {"main.py": (
        "import sys\n"
        "HTTP = ('http', 'email', 'socketserver', 'mimetypes', 'urllib')\n"
        "OURS = ('_qinling_runtime.httpserver', '_qinling_runtime.wire')\n"
        "def main():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in HTTP or m in OURS)\n")},
    # A decimal context is per context: each call must find the default.
    "decimalctx": {"main.py": (
        "import decimal\n"
        "def main():\n"
        "    prec = decimal.getcontext().prec\n"
        "    decimal.getcontext().prec = 5\n"
        "    return prec\n")},
    "counter": {"main.py": "COUNT = 0\ndef main():\n    global COUNT\n    COUNT += 1\n    return COUNT\n"},
    # What functions written for upstream's runtime expect (README.md).
    "compat": {"main.py": (
        "import errno\n"
        "PI_LIKE = str(7 ** 60000)   # converted at import: in a preloaded zygote too\n"
        "def digits():\n    n = 10 ** 50000\n    print(n)\n    return [len(str(n)), len(PI_LIKE)]\n"
        "def eagain():\n    raise BlockingIOError(errno.EAGAIN, 'Resource temporarily unavailable')\n"
        "def threads():\n    raise RuntimeError(\"can't start new thread\")\n"
        "def keyerror():\n    raise KeyError('k')\n")},
}

# Functions for strict isolation: each tries to leave something behind for
# the next execution, or to harm the worker.


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=20):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Worker:
    """A real server.py subprocess on a temp unix socket."""

    def __init__(self, packages, *extra):
        self.dir = tempfile.mkdtemp(prefix="qinling-py-")
        self.sock = os.path.join(self.dir, "w.sock")
        self.err = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", SERVER, "--socket", self.sock, "--packages-dir", packages, *extra],
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.err.seek(0)
                output = self.err.read()
                self.stop()
                if "strict isolation is not available" in output and "namespaces" in output:
                    # No unprivileged user namespaces here (and not root).
                    raise unittest.SkipTest(output.strip())
                raise RuntimeError("worker did not start: %s" % output)
            time.sleep(0.02)

    def request(self, method, path, body=None):
        conn = UnixConnection(self.sock)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/json"} if body is not None else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def execute(self, fid, entry="main.main", input=None, **extra):
        req = dict(execution_id="exec-%s-%s" % (fid, time.monotonic_ns()), function_id=fid,
                   entry=entry, input=input, **extra)
        status, body = self.request("POST", "/execute", json.dumps(req).encode())
        assert status == 200, (status, body)
        result = json.loads(body)
        result["_id"] = req["execution_id"]
        return result

    def post(self, path, obj):
        status, body = self.request("POST", path, json.dumps(obj).encode())
        assert status == 200, (status, body)
        return json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Base(unittest.TestCase):
    def assertFailed(self, r, output):
        self.assertFalse(r["success"], r)
        self.assertEqual(r["output"], output)


def make_packages(*sets):
    packages = tempfile.mkdtemp(prefix="qinling-pkgs-")
    for fid, files in [item for pkgs in sets for item in pkgs.items()]:
        for name, src in files.items():
            path = os.path.join(packages, fid, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(src)
    return packages


def descendants(pid):
    """pid's live descendants, from /proc/<pid>/task/*/children."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out += [k] + descendants(k)
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class WorkerTest(Base):
    """Tests sharing one worker, started with ARGS, serving PACKAGE_SETS."""

    ARGS = ()
    PACKAGE_SETS = (PACKAGES,)

    @classmethod
    def setUpClass(cls):
        cls.packages = make_packages(*cls.PACKAGE_SETS)
        try:
            cls.w = Worker(cls.packages, *cls.ARGS)
        except unittest.SkipTest:
            shutil.rmtree(cls.packages, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        shutil.rmtree(cls.packages, ignore_errors=True)
