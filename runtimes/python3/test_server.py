"""Tests for server.py: start the real server on a temp unix socket and talk HTTP.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
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
STRICT_PACKAGES = {
    "state": {"main.py": (
        "import os\n"
        "COUNT = 0\n"
        "def main(**kwargs):\n"
        "    global COUNT\n"
        "    COUNT += 1\n"
        "    seen = {'count': COUNT, 'tmp': sorted(os.listdir('/tmp')), 'env': os.environ.get('QINLING_LEFT'),\n"
        "            'cwd': os.getcwd(), 'here': sorted(os.listdir('.')), 'pid': os.getpid()}\n"
        "    with open('/tmp/left-behind', 'w') as f:\n"
        "        f.write('x')\n"
        "    with open('relative', 'w') as f:\n"
        "        f.write('y')\n"
        "    os.environ['QINLING_LEFT'] = 'yes'\n"
        "    os.chdir('/')\n"
        "    return seen\n"
        "def socket_visible(path):\n"
        "    return os.path.exists(path)\n")},
    "spawn": {"main.py": (
        "import os, subprocess, time\n"
        "def main(**kwargs):\n"
        "    a = subprocess.Popen(['sleep', '300'])\n"
        "    b = subprocess.Popen(['sleep', '301'], start_new_session=True)\n"
        "    pid = os.fork()\n"
        "    if pid == 0:   # a daemon: double fork, new session\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(302)\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    return [a.pid, b.pid]\n")},
    "hostile": {"main.py": (
        "import os, signal\n"
        "def main(**kwargs):\n"
        "    out = {}\n"
        "    parent = os.getppid()\n"
        "    for name, pid, sig in (('parent', parent, signal.SIGKILL), ('parent group', -parent, signal.SIGKILL),\n"
        "                           ('pid 1', 1, signal.SIGTERM), ('everyone', -1, signal.SIGKILL)):\n"
        "        try:\n"
        "            os.kill(pid, sig)\n"
        "            out[name] = 'sent'\n"
        "        except OSError as e:\n"
        "            out[name] = e.errno\n"
        "    return out\n"
        "def exit3():\n"
        "    print('leaving')\n"
        "    os._exit(3)\n"
        "def loop():\n"
        "    print('looping', flush=True)\n"
        "    while True:\n"
        "        pass\n")},
    "threaded_import": {"main.py": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "def main():\n"
        "    return threading.active_count()\n")},
    "slow_import": {"main.py": "import time\ntime.sleep(30)\ndef main():\n    return 1\n"},
}


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


class ServerTest(Base):
    ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.packages = tempfile.mkdtemp(prefix="qinling-pkgs-")
        for fid, files in PACKAGES.items():
            for name, src in files.items():
                path = os.path.join(cls.packages, fid, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(src)
        try:
            cls.w = Worker(cls.packages, *cls.ARGS)
        except unittest.SkipTest:
            shutil.rmtree(cls.packages, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        shutil.rmtree(cls.packages, ignore_errors=True)

    def test_ping(self):
        self.assertEqual(self.w.request("GET", "/ping"), (200, b"pong"))
        self.assertEqual(self.w.request("GET", "/nope")[0], 404)

    def test_keep_alive(self):
        conn = UnixConnection(self.w.sock)
        try:
            for _ in range(2):
                conn.request("GET", "/ping")
                resp = conn.getresponse()
                self.assertEqual((resp.status, resp.read()), (200, b"pong"))
            body = json.dumps({"execution_id": "ka", "function_id": "hello"})
            conn.request("POST", "/execute", body=body)
            resp = conn.getresponse()
            self.assertEqual(json.loads(resp.read())["output"], "Hello, World")
        finally:
            conn.close()

    def test_hello_kwargs_and_log(self):
        r = self.w.execute("hello", input={"name": "Qinling"})
        self.assertTrue(r["success"], r)
        self.assertEqual(r["output"], "Hello, Qinling")
        self.assertEqual(r["logs"], "Start execution: %s\nHello, Qinling\nFinished execution: %s\n"
                         % (r["_id"], r["_id"]))
        self.assertIsInstance(r["duration"], float)
        self.assertEqual(self.w.execute("hello")["output"], "Hello, World")

    def test_positional_input(self):
        r = self.w.execute("positional", input={"__function_input": "Qinling"})
        self.assertEqual((r["success"], r["output"]), (True, "Hello, Qinling"))

    def test_modules_importing_each_other(self):
        r = self.w.execute("mutual", entry="pkg_a.main")
        self.assertEqual((r["success"], r["output"]), (True, "ab"))

    def test_dotted_module_path(self):
        r = self.w.execute("nested", entry="lib.handlers.run")
        self.assertEqual((r["success"], r["output"]), (True, "nested"))

    def test_function_raises(self):
        r = self.w.execute("raises")
        self.assertFailed(r, "ValueError: bad input value")
        self.assertIn("before\n", r["logs"])
        self.assertIn("Traceback (most recent call last)", r["logs"])
        self.assertIn("in helper", r["logs"])
        self.assertIn("ValueError: bad input value", r["logs"])
        self.assertTrue(r["logs"].endswith("Finished execution: %s\n" % r["_id"]))
        self.assertFailed(self.w.execute("raises", entry="main.empty"), "RuntimeError")

    def test_upstream_compatibility(self):
        r = self.w.execute("compat", entry="main.digits")
        self.assertEqual((r["success"], r["output"]), (True, [50001, 50706]), "no limit on integer digits")
        self.assertIn("1" + "0" * 50000 + "\n", r["logs"])
        for entry, logged in (("eagain", "BlockingIOError: [Errno 11] Resource temporarily unavailable"),
                              ("threads", "RuntimeError: can't start new thread")):
            r = self.w.execute("compat", entry="main." + entry)
            self.assertFailed(r, "Function execution failed because of too much resource consumption")
            self.assertIn(logged, r["logs"], "the detail is in the log")
        self.assertFailed(self.w.execute("compat", entry="main.keyerror"), "KeyError: 'k'")

    def test_sys_exit_does_not_kill_worker(self):
        self.assertFailed(self.w.execute("raises", entry="main.sysexit"), "Function raised SystemExit: 4.")
        self.assertEqual(self.w.request("GET", "/ping")[0], 200)

    def test_result_not_serializable(self):
        r = self.w.execute("badresult")
        self.assertFalse(r["success"])
        self.assertTrue(r["output"].startswith("Function result is not JSON serializable: "), r)
        self.assertIn("set", r["output"])
        self.assertFalse(self.w.execute("badresult", entry="main.nan")["success"])

    def test_result_too_large(self):
        r = self.w.execute("badresult", entry="main.big")
        self.assertFailed(r, "Function result too large: %d bytes (limit 1048576)." % (2 * 1024 * 1024 + 2))

    def test_entry_problems(self):
        self.assertFailed(self.w.execute("hello", entry="main.missing"),
                          "Function 'missing' not found in module 'main'.")
        self.assertFailed(self.w.execute("badresult", entry="main.not_callable"),
                          "Entry 'main.not_callable' is not callable.")
        r = self.w.execute("hello", entry="nosuchmodule.main")
        self.assertFailed(r, "Failed to import module 'nosuchmodule': ModuleNotFoundError: No module named 'nosuchmodule'")
        r = self.w.execute("broken")
        self.assertFailed(r, "Failed to import module 'main': ModuleNotFoundError: No module named 'does_not_exist_anywhere'")
        self.assertIn("Traceback", r["logs"])
        self.assertNotIn("importlib", r["logs"])   # import machinery frames are hidden
        self.assertFailed(self.w.execute("hello", entry="main"),
                          "Invalid entry 'main': expected 'module.function'.")

    def test_missing_package(self):
        self.assertFailed(self.w.execute("no-such-function"),
                          "Function package not found for function no-such-function.")

    def test_huge_print_truncated(self):
        r = self.w.execute("noisy")
        self.assertEqual((r["success"], r["output"]), (True, "done"))
        self.assertIn("... [log truncated: %d bytes dropped]\n" % (4 * 1024 * 1024), r["logs"])
        self.assertLess(len(r["logs"]), 1024 * 1024 + 500)
        self.assertTrue(r["logs"].endswith("Finished execution: %s\n" % r["_id"]))

    def test_concurrent_logs_separate(self):
        results = {}

        def run(tag):
            results[tag] = self.w.execute("sleepy", input={"seconds": 0.3, "tag": tag})

        threads = [threading.Thread(target=run, args=("T%d" % i,)) for i in range(4)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertLess(time.monotonic() - start, 1.5)   # really concurrent
        for tag, r in results.items():
            self.assertEqual(r["output"], tag)
            lines = r["logs"].splitlines()
            self.assertEqual(lines[1:4], ["%s line %d" % (tag, i) for i in range(3)], r["logs"])
            self.assertEqual(len(lines), 5, r["logs"])

    def test_child_thread_and_logging_captured(self):
        r = self.w.execute("sleepy", entry="main.threaded")
        self.assertTrue(r["success"], r)
        self.assertIn("from child thread\n", r["logs"])
        self.assertIn("logged warning\n", r["logs"])

    def test_context_injection(self):
        r = self.w.execute("ctx", entry="main.plain", input={"name": "x"})
        self.assertEqual((r["success"], r["output"]), (True, "x"))
        self.assertEqual(self.w.execute("ctx", entry="main.explicit")["output"], ["os_session"])
        self.assertEqual(self.w.execute("ctx", entry="main.kw", input={"a": 1})["output"], ["a", "context"])

    def test_warm_module_globals_persist(self):
        self.assertEqual(self.w.execute("counter")["output"], 1)
        self.assertEqual(self.w.execute("counter")["output"], 2)

    def test_bad_requests(self):
        status, body = self.w.request("POST", "/execute", b"{not json")
        self.assertEqual(status, 400)
        self.assertIn("error", json.loads(body))
        status, body = self.w.request("POST", "/execute", json.dumps({"function_id": "hello"}).encode())
        self.assertEqual(status, 400)
        self.assertIn("execution_id", json.loads(body)["error"])
        status, _ = self.w.request("POST", "/execute", json.dumps(
            {"execution_id": "e", "function_id": "hello", "timeout": "soon"}).encode())
        self.assertEqual(status, 400)


class StrictServerTest(ServerTest):
    """Every ServerTest case again, under strict isolation: the same answers,
    log format, limits and error messages; only state does not carry over."""
    ARGS = ("--isolation", "strict", "--spares", "2")

    def test_warm_module_globals_persist(self):
        self.assertEqual(self.w.execute("counter")["output"], 1)
        self.assertEqual(self.w.execute("counter")["output"], 1)

    def test_timing_reported(self):
        r = self.w.execute("hello")
        self.assertEqual(sorted(r["timing"]), ["acquire_ms", "import_ms", "run_ms", "server_ms"])


class StrictTest(Base):
    """Strict isolation: fresh state for every execution, a worker that the
    function cannot harm, timeouts that cost only the execution."""

    @classmethod
    def setUpClass(cls):
        cls.packages = make_packages(PACKAGES, STRICT_PACKAGES)
        try:
            cls.w = Worker(cls.packages, "--isolation", "strict", "--spares", "2")
        except unittest.SkipTest:
            shutil.rmtree(cls.packages, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        shutil.rmtree(cls.packages, ignore_errors=True)

    def ok(self, fid, **kw):
        r = self.w.execute(fid, **kw)
        self.assertTrue(r["success"], r)
        return r["output"]

    def settled(self, want, timeout=5.0):
        """Waits until the worker's process tree has want processes (its
        server's zygotes and prepared processes) and returns them."""
        deadline = time.monotonic() + timeout
        while True:
            tree = [p for p in descendants(self.w.proc.pid) if alive(p)]
            if len(tree) == want or time.monotonic() > deadline:
                return tree
            time.sleep(0.02)

    def test_nothing_carries_over(self):
        # Unsandboxed, packages under /tmp stay in view in the fresh /tmp.
        kept = []
        if self.packages.startswith("/tmp/"):
            kept = [self.packages.split("/")[2]]
        pids = set()
        for level in ("runtime", "function", "none", "runtime"):
            self.assertEqual(self.w.post("/preload", {"level": level, "function_id": "state"})["level"], level)
            for _ in range(3):
                seen = self.ok("state")
                self.assertEqual(seen.pop("count"), 1, level)
                pids.add(seen.pop("pid"))
                self.assertEqual(seen, {"tmp": kept, "env": None, "cwd": "/tmp", "here": kept}, level)
        self.assertEqual(len(pids), 12, "a fresh process every time")

    def test_server_socket_hidden(self):
        self.assertIs(self.ok("state", entry="main.socket_visible", input={"path": self.w.sock}), False)

    def test_processes_do_not_outlive_the_execution(self):
        self.settled(3)
        pids = self.ok("spawn")
        tree = self.settled(3)   # the zygote and two prepared processes
        self.assertEqual(len(tree), 3, tree)
        for pid in pids:
            self.assertFalse(alive(pid), "process %d survived" % pid)

    def test_cannot_harm_the_worker(self):
        out = self.ok("hostile")
        self.assertEqual(out, {"parent": 1, "parent group": 1, "pid 1": 1, "everyone": 1})   # EPERM
        self.assertEqual(self.w.request("GET", "/ping")[0], 200)
        self.assertIsNone(self.w.proc.poll())
        self.assertEqual(self.ok("hello"), "Hello, World")

    def test_process_exiting_without_answer(self):
        r = self.w.execute("hostile", entry="main.exit3")
        self.assertFailed(r, "Function execution failed: its process exited with status 3 before answering.")
        self.assertIn("leaving\n", r["logs"])
        self.assertEqual(self.ok("hello"), "Hello, World")

    def test_timeout_kills_only_the_execution(self):
        start = time.monotonic()
        r = self.w.execute("hostile", entry="main.loop", timeout=0.5)
        self.assertLess(time.monotonic() - start, 3)
        self.assertFailed(r, "Function execution timeout.")
        self.assertIn("looping\n", r["logs"])
        self.assertIn("Execution timed out after 0.5 seconds.\n", r["logs"])
        self.assertEqual(self.w.request("GET", "/ping")[0], 200, "no draining in strict mode")
        self.assertEqual(self.ok("hello"), "Hello, World")
        self.assertIsNone(self.w.proc.poll())

    def test_preload_levels(self):
        for level in ("function", "runtime", "none", "function"):
            got = self.w.post("/preload", {"level": level, "function_id": "hello", "entry": "main.main"})
            self.assertEqual(got, {"level": level, "error": None})
            r = self.w.execute("hello", input={"name": level})
            self.assertEqual(r["output"], "Hello, %s" % level)
            self.assertIn("Hello, %s\n" % level, r["logs"])
        self.assertEqual(self.w.post("/preload", {"level": "runtime", "function_id": "hello"})["level"], "runtime")

    def test_no_integer_digit_limit_at_any_level(self):
        for level in ("function", "none", "runtime"):
            got = self.w.post("/preload", {"level": level, "function_id": "compat", "entry": "main.digits"})
            self.assertEqual(got, {"level": level, "error": None})
            self.assertEqual(self.ok("compat", entry="main.digits"), [50001, 50706], level)

    def test_preload_that_cannot_be_done_falls_back(self):
        got = self.w.post("/preload", {"level": "function", "function_id": "broken"})
        self.assertEqual(got["level"], "runtime")
        self.assertIn("No module named 'does_not_exist_anywhere'", got["error"])
        self.assertFailed(self.w.execute("broken"),
                          "Failed to import module 'main': ModuleNotFoundError: No module named 'does_not_exist_anywhere'")

        got = self.w.post("/preload", {"level": "function", "function_id": "threaded_import"})
        self.assertEqual(got["level"], "runtime")
        self.assertIn("started threads", got["error"])
        self.assertEqual(self.ok("threaded_import"), 2, "imported in the execution, thread and all")

        start = time.monotonic()
        got = self.w.post("/preload", {"level": "function", "function_id": "slow_import", "timeout": 0.5})
        self.assertLess(time.monotonic() - start, 3)
        self.assertEqual(got["level"], "runtime")
        self.assertIn("longer than 0.5s", got["error"])
        self.w.post("/preload", {"level": "runtime", "function_id": "hello"})

    def test_bad_preload(self):
        status, _ = self.w.request("POST", "/preload", json.dumps({"level": "all", "function_id": "x"}).encode())
        self.assertEqual(status, 400)


class LifecycleTest(Base):
    def setUp(self):
        self.packages = tempfile.mkdtemp(prefix="qinling-pkgs-")
        os.makedirs(os.path.join(self.packages, "sleepy"))
        with open(os.path.join(self.packages, "sleepy", "main.py"), "w") as f:
            f.write(PACKAGES["sleepy"]["main.py"])
        self.w = Worker(self.packages)

    def tearDown(self):
        self.w.stop()
        shutil.rmtree(self.packages, ignore_errors=True)

    def test_timeout_drains_then_exits_3(self):
        long_result = {}
        slow = threading.Thread(target=lambda: long_result.update(
            self.w.execute("sleepy", input={"seconds": 1.5, "tag": "slow"}, timeout=10)))
        slow.start()
        time.sleep(0.2)
        r = self.w.execute("sleepy", input={"seconds": 30}, timeout=0.5)
        self.assertFailed(r, "Function execution timeout.")
        self.assertGreaterEqual(r["duration"], 0.5)
        self.assertLess(r["duration"], 1.5)
        self.assertIn("timed out", r["logs"])
        # Draining: the other execution is still in flight, new work is refused.
        status, body = self.w.request("GET", "/ping")
        self.assertEqual((status, json.loads(body)), (503, {"error": "worker draining"}))
        status, _ = self.w.request("POST", "/execute", json.dumps(
            {"execution_id": "late", "function_id": "sleepy"}).encode())
        self.assertEqual(status, 503)
        self.assertIsNone(self.w.proc.poll())
        slow.join()
        self.assertEqual((long_result["success"], long_result["output"]), (True, "slow"))
        self.assertEqual(self.w.proc.wait(timeout=5), 3)
        self.assertFalse(os.path.exists(self.w.sock))

    def test_sigterm_exits_cleanly(self):
        self.w.proc.terminate()
        self.assertEqual(self.w.proc.wait(timeout=5), 0)
        self.assertFalse(os.path.exists(self.w.sock))


def zip_bytes(files, symlink=None):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink[0])
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, symlink[1])
    return buf.getvalue()


class PackageTest(Base):
    """POST /package: a remote worker gets its function pushed (Kubernetes)."""

    def setUp(self):
        self.packages = tempfile.mkdtemp(prefix="qinling-pkgs-")
        self.w = Worker(self.packages)

    def tearDown(self):
        self.w.stop()
        shutil.rmtree(self.packages, ignore_errors=True)

    def push(self, fid, data, version=0, md5=None):
        import hashlib
        md5 = hashlib.md5(data).hexdigest() if md5 is None else md5
        status, body = self.w.request("POST", "/package?function_id=%s&function_version=%d&md5=%s"
                                      % (fid, version, md5), data)
        return status, json.loads(body)

    def test_push_then_execute(self):
        data = zip_bytes({"main.py": PACKAGES["hello"]["main.py"], "lib/x.py": "X = 1\n"})
        self.assertEqual(self.push("fn-1", data, version=2)[0], 200)
        self.assertTrue(os.path.isfile(os.path.join(self.packages, "fn-1", "lib", "x.py")))
        r = self.w.execute("fn-1", input={"name": "pod"}, function_version=2)
        self.assertEqual((r["success"], r["output"]), (True, "Hello, pod"))
        # The same package again is harmless.
        self.assertEqual(self.push("fn-1", data, version=2)[0], 200)

    def test_dedicated_to_one_function(self):
        data = zip_bytes({"main.py": PACKAGES["hello"]["main.py"]})
        self.assertEqual(self.push("fn-1", data)[0], 200)
        status, body = self.push("fn-2", data)
        self.assertEqual(status, 409, body)
        # /execute for another function or version: 410, nothing runs.
        for fid, version in (("fn-2", 0), ("fn-1", 1)):
            status, body = self.w.request("POST", "/execute", json.dumps(
                {"execution_id": "e", "function_id": fid, "function_version": version}).encode())
            self.assertEqual(status, 410, body)
            self.assertIn("serves function fn-1 version 0", json.loads(body)["error"])

    def test_dedication_survives_restart(self):
        data = zip_bytes({"main.py": PACKAGES["hello"]["main.py"]})
        self.assertEqual(self.push("fn-1", data)[0], 200)
        self.w.stop()
        self.w = Worker(self.packages)
        self.assertEqual(self.push("fn-2", data)[0], 409)
        self.assertTrue(self.w.execute("fn-1")["success"])

    def test_refused_packages(self):
        good = zip_bytes({"main.py": "def main():\n    return 1\n"})
        for name, data, md5, status, message in [
            ("checksum", good, "0" * 32, 400, "checksum mismatch"),
            ("not a zip", b"not a zip at all", None, 400, "not a valid zip"),
            ("zip slip", zip_bytes({"../evil.py": "x"}), None, 400, "unsafe path"),
            ("absolute", zip_bytes({"/etc/evil.py": "x"}), None, 400, "unsafe path"),
            ("symlink", zip_bytes({}, symlink=("link", "/etc/passwd")), None, 400, "not a regular file"),
        ]:
            with self.subTest(name):
                code, body = self.push("fn-bad", data, md5=md5)
                self.assertEqual(code, status, body)
                self.assertIn(message, body["error"])
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.packages), "evil.py")))
        self.assertEqual([n for n in os.listdir(self.packages) if n.startswith(".pkg-")], [])
        # Refused packages leave the worker free for a good one.
        self.assertEqual(self.push("fn-ok", good)[0], 200)

    def test_bad_function_id(self):
        data = zip_bytes({"main.py": "x = 1\n"})
        for fid in ("", "..", ".qinling-serving"):
            with self.subTest(fid=fid):
                self.assertEqual(self.push(fid, data)[0], 400)


if __name__ == "__main__":
    unittest.main()
