"""Tests for strict isolation (what it adds to test_server.py's cases): start the real server on a temp unix socket and talk HTTP.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import json
import time
import unittest

from harness import PACKAGES, WorkerTest, alive, descendants

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
        "def ancestors(depth):\n"
        "    # Its zygote(s) and its server, and their process groups.\n"
        "    out, pid = [], os.getpid()\n"
        "    for _ in range(depth):\n"
        "        with open('/proc/%d/stat' % pid) as f:\n"
        "            pid = int(f.read().rsplit(')', 1)[1].split()[1])\n"
        "        if pid <= 0:\n"
        "            break\n"
        "        for target in (pid, -pid):\n"
        "            try:\n"
        "                os.kill(target, signal.SIGKILL)\n"
        "                out.append('sent')\n"
        "            except OSError as e:\n"
        "                out.append(e.errno)\n"
        "    return out\n"
        "def exit3():\n"
        "    print('leaving')\n"
        "    os._exit(3)\n"
        "def loop():\n"
        "    print('looping', flush=True)\n"
        "    while True:\n"
        "        pass\n"
        "def dribble():\n"
        "    # On its channel to the server: the start of an answer, then a byte\n"
        "    # every 0.1 s, each in time for a per-recv timeout.\n"
        "    import stat, time\n"
        "    fd = next(fd for fd in range(3, 64) if _is_socket(fd))\n"
        "    os.write(fd, (1000).to_bytes(4, 'little'))\n"
        "    while True:\n"
        "        os.write(fd, b' ')\n"
        "        time.sleep(0.1)\n"
        "def _is_socket(fd):\n"
        "    import stat\n"
        "    try:\n"
        "        return stat.S_ISSOCK(os.fstat(fd).st_mode)\n"
        "    except OSError:\n"
        "        return False\n")},
    # In a user and mount namespace of its own, tries to uncover what its
    # /tmp covers (the worker's own /tmp, with its socket when unsandboxed):
    # a bind of / without its submounts, a move of /tmp, an unmount.
    "uncover": {"main.py": (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def attempt(rc):\n"
        "    return 'done' if rc == 0 else os.strerror(ctypes.get_errno())\n"
        "def main(path):\n"
        "    shared = [l for l in open('/proc/self/mountinfo') if ' shared:' in l]\n"
        "    uid, gid = os.getuid(), os.getgid()\n"
        "    out = {'shared': shared, 'unshare': attempt(libc.unshare(0x10000000 | 0x00020000))}\n"
        "    libc.prctl(4, 1, 0, 0, 0)   # dumpable: its /proc/self files become its own\n"
        "    if out['unshare'] == 'done':\n"
        "        maps = (('setgroups', 'deny'), ('gid_map', '%d %d 1' % (gid, gid)), ('uid_map', '%d %d 1' % (uid, uid)))\n"
        "        for f, d in maps:\n"
        "            with open('/proc/self/' + f, 'w') as fh:\n"
        "                fh.write(d)\n"
        "    os.mkdir('/tmp/x')\n"
        "    out['bind'] = attempt(libc.mount(b'/', b'/tmp/x', None, 0x1000, None))\n"
        "    out['move'] = attempt(libc.mount(b'/tmp', b'/tmp/x', None, 0x2000, None))\n"
        "    out['umount'] = attempt(libc.umount2(b'/tmp', 2))\n"
        "    out['visible'] = os.path.exists(path) or os.path.exists('/tmp/x' + path)\n"
        "    return out\n")},
    # Its module patches print, which the runtime's own code calls in the
    # function zygote after the import (prewarming): the patch starts a
    # process, or a thread, there.
    "patch_proc": {"main.py": (
        "import builtins, subprocess\n"
        "real = builtins.print\n"
        "def sneaky(*a, **kw):\n"
        "    subprocess.Popen(['sleep', '300'])\n"
        "    return real(*a, **kw)\n"
        "builtins.print = sneaky\n"
        "def main():\n"
        "    return 'patched'\n")},
    "patch_thread": {"main.py": (
        "import builtins, threading, time\n"
        "real = builtins.print\n"
        "def sneaky(*a, **kw):\n"
        "    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
        "    return real(*a, **kw)\n"
        "builtins.print = sneaky\n"
        "def main():\n"
        "    return 'patched'\n")},
    "threaded_import": {"main.py": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "def main():\n"
        "    return threading.active_count()\n")},
    "slow_import": {"main.py": "import time\ntime.sleep(30)\ndef main():\n    return 1\n"},
}


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class StrictTest(WorkerTest):
    """Strict isolation: fresh state for every execution, a worker that the
    function cannot harm, timeouts that cost only the execution."""

    ARGS = ("--isolation", "strict", "--spares", "2")
    PACKAGE_SETS = (PACKAGES, STRICT_PACKAGES)

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
        # The tree is killed once the answer is sent, while the spares are
        # topped up; a /proc children file read during those forks may miss
        # the old process, so settled() alone does not say it is gone yet.
        # Each of these sleeps for 300 s: gone within 5 s means killed.
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            self.assertFalse(alive(pid), "process %d survived" % pid)

    def test_cannot_harm_the_worker(self):
        out = self.ok("hostile")
        self.assertEqual(out, {"parent": 1, "parent group": 1, "pid 1": 1, "everyone": 1})   # EPERM
        self.assertEqual(self.w.request("GET", "/ping")[0], 200)
        self.assertIsNone(self.w.proc.poll())
        self.assertEqual(self.ok("hello"), "Hello, World")

    def test_cannot_signal_its_zygotes_at_any_level(self):
        # At the function level its parent is the function zygote, whose
        # filter (inherited, not installed again) protects it.
        for level, depth in (("runtime", 2), ("function", 3), ("none", 2)):   # up to the server, no further
            got = self.w.post("/preload", {"level": level, "function_id": "hostile", "entry": "main.ancestors"})
            self.assertEqual(got["level"], level)
            out = self.ok("hostile", entry="main.ancestors", input={"depth": depth})
            self.assertEqual(out, [1] * 2 * depth, level)   # EPERM
        self.assertIsNone(self.w.proc.poll())
        self.assertEqual(self.ok("hello"), "Hello, World")

    def test_cannot_uncover_what_its_tmp_covers(self):
        for level in ("runtime", "function", "none"):
            got = self.w.post("/preload", {"level": level, "function_id": "uncover"})
            self.assertEqual(got["level"], level)
            out = self.ok("uncover", input={"path": self.w.sock})
            self.assertEqual(out.pop("shared"), [], "no mount propagates out (%s)" % level)
            self.assertFalse(out.pop("visible"), level)
            if out.pop("unshare") != "done":
                continue   # no nested user namespaces here: nothing to try
            self.assertEqual(out, {"bind": "Invalid argument", "move": "Invalid argument",
                                   "umount": "Invalid argument"}, level)

    def test_runtime_code_run_after_the_import_is_checked_too(self):
        # A process started from the function zygote after the import is
        # killed before any execution is forked; a thread makes it refuse.
        got = self.w.post("/preload", {"level": "function", "function_id": "patch_proc"})
        self.assertEqual(got, {"level": "function", "error": None})
        self.assertEqual(self.ok("patch_proc"), "patched")
        # Each prepared process started one too, below itself (killed with
        # it); none is left below the server or a zygote.
        time.sleep(0.3)
        tree = descendants(self.w.proc.pid)
        parents = {p: _ppid(p) for p in tree if alive(p)}
        zygotes = {p for p, pp in parents.items() if pp == self.w.proc.pid}
        zygotes |= {p for p, pp in parents.items() if pp in zygotes}
        stray = [p for p, pp in parents.items() if _cmdline(p).startswith("sleep") and
                 pp in zygotes | {self.w.proc.pid}]
        self.assertEqual(stray, [], parents)
        got = self.w.post("/preload", {"level": "function", "function_id": "patch_thread"})
        self.assertEqual(got["level"], "runtime")
        self.assertIn("started threads", got["error"])
        self.assertEqual(self.ok("patch_thread"), "patched")
        self.assertEqual(self.w.post("/preload", {"level": "runtime", "function_id": "hello"})["level"], "runtime")

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

    def test_timeout_holds_against_a_dribbled_answer(self):
        start = time.monotonic()
        r = self.w.execute("hostile", entry="main.dribble", timeout=0.5)
        self.assertLess(time.monotonic() - start, 3)
        self.assertFailed(r, "Function execution timeout.")
        self.assertEqual(self.ok("hello"), "Hello, World")

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


if __name__ == "__main__":
    unittest.main()
