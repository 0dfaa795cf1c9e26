"""Tests for reuse isolation's timeouts (reuse.py): the function runs in the
thread that read its request, and the watchdog answers a call past its
deadline while the function still runs. Each case gets its own worker,
since a timed-out call makes the worker drain and exit 3."""

import http.client
import json
import os
import shutil
import threading
import time
import unittest

from harness import Base, Worker, make_packages

HOSTILE = {"hostile": {"main.py": (
    "import os, socket, threading, time\n"
    "def sleep(seconds, **kwargs):\n"
    "    time.sleep(seconds)\n"
    "    return 'slept'\n"
    "def forever(**kwargs):\n"
    "    print('blocking forever')\n"
    "    threading.Event().wait()\n"
    "def stubborn(**kwargs):\n"
    "    # Catches everything it can, forever.\n"
    "    while True:\n"
    "        try:\n"
    "            time.sleep(0.01)\n"
    "        except BaseException:\n"
    "            pass\n"
    "def spawner(**kwargs):\n"
    "    for _ in range(4):\n"
    "        threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    "    threading.Event().wait()\n"
    "def sockets(**kwargs):\n"
    "    # Writes garbage to, then closes, every socket it finds (its own\n"
    "    # connection among them), then blocks.\n"
    "    for fd in map(int, os.listdir('/proc/self/fd')):\n"
    "        try:\n"
    "            if not os.readlink('/proc/self/fd/%d' % fd).startswith('socket:'):\n"
    "                continue\n"
    "            s = socket.socket(fileno=os.dup(fd))\n"
    "            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):\n"
    "                s.close()\n"
    "                continue\n"
    "            os.write(fd, b'garbage\\r\\n\\r\\n')\n"
    "            s.close()\n"
    "            os.close(fd)\n"
    "        except OSError:\n"
    "            pass\n"
    "    threading.Event().wait()\n")}}


class ReuseTimeoutTest(Base):
    def setUp(self):
        self.packages = make_packages(HOSTILE)
        self.w = Worker(self.packages)

    def tearDown(self):
        self.w.stop()
        shutil.rmtree(self.packages, ignore_errors=True)

    def call(self, entry, timeout, input=None):
        """The raw answer of one call: (status, parsed body), or None if the
        connection ended without one."""
        req = {"execution_id": "e-%d" % time.monotonic_ns(), "function_id": "hostile",
               "entry": "main." + entry, "timeout": timeout, "input": input}
        try:
            status, body = self.w.request("POST", "/execute", json.dumps(req).encode())
        except OSError:
            return None
        except http.client.HTTPException:   # not HTTP at all
            return 0, b""
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def assertTimedOutAndExited(self, answers):
        for a in answers:
            self.assertIsNotNone(a, "every call is answered")
            status, r = a
            self.assertEqual(status, 200)
            self.assertFailed(r, "Function execution timeout.")
            self.assertIn("timed out", r["logs"])
        self.assertEqual(self.w.proc.wait(timeout=10), 3, "a tainted worker drains and exits 3")

    def test_watchdog_answers_while_the_function_runs(self):
        cases = [
            # name, entry, concurrent calls
            ("blocks forever", "forever", 1),
            ("blocks forever, 4 at once", "forever", 4),
            ("catches every exception", "stubborn", 1),
            ("spawns threads", "spawner", 2),
        ]
        for name, entry, n in cases:
            with self.subTest(name):
                if self.w.proc.poll() is not None:   # the previous case's worker exited
                    self.w.stop()
                    self.w = Worker(self.packages)
                answers = [None] * n

                def one(i):
                    answers[i] = self.call(entry, 0.3)
                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.assertTimedOutAndExited(answers)
                if entry == "forever":
                    self.assertIn("blocking forever", answers[0][1]["logs"], "what it printed is kept")

    def test_a_call_ending_at_its_deadline_is_answered_once(self):
        # The function returns just as the watchdog may take it: either
        # answer is right, but exactly one, and the worker's state follows it.
        for timeout in (0.05, 0.1, 0.2):
            with self.subTest(timeout=timeout):
                if self.w.proc.poll() is not None:
                    self.w.stop()
                    self.w = Worker(self.packages)
                a = self.call("sleep", timeout, {"seconds": timeout})
                self.assertIsNotNone(a)
                status, r = a
                self.assertEqual(status, 200)
                if r["success"]:
                    self.assertEqual(r["output"], "slept")
                    self.assertEqual(self.w.request("GET", "/ping"), (200, b"pong"))
                else:
                    self.assertTimedOutAndExited([a])

    def test_late_result_dropped_while_another_call_runs(self):
        # The long call keeps the draining worker alive past the short
        # call's late return: that call had its one answer, the timeout.
        long = {}
        t = threading.Thread(target=lambda: long.update(a=self.call("sleep", 10, {"seconds": 1.2})))
        t.start()
        time.sleep(0.1)
        short = self.call("sleep", 0.2, {"seconds": 0.6})
        t.join()
        self.assertTimedOutAndExited([short])
        self.assertEqual(long["a"][1]["output"], "slept")

    def test_function_closing_its_own_connection(self):
        # Garbage on, then the end of, the connection the watchdog must
        # answer on: no answer can arrive, and the worker still exits.
        a = self.call("sockets", 0.3)
        if a is not None:
            self.assertNotEqual(a[0], 200, "garbage is no answer")
        self.assertEqual(self.w.proc.wait(timeout=10), 3)

    def test_no_thread_beyond_the_connections_and_the_watchdog(self):
        for _ in range(3):
            self.assertEqual(self.call("sleep", 5, {"seconds": 0})[1]["output"], "slept")
        deadline = time.monotonic() + 5   # the connection threads end as their connections close
        while len(os.listdir("/proc/%d/task" % self.w.proc.pid)) > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(os.listdir("/proc/%d/task" % self.w.proc.pid)), 2, "main and watchdog")


if __name__ == "__main__":
    unittest.main()
