"""Tests for server.py (reuse isolation, and every case again under strict): start the real server on a temp unix socket and talk HTTP.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import PACKAGES, Base, UnixConnection, Worker, WorkerTest


class ServerTest(WorkerTest):
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

    def test_each_call_in_a_fresh_context(self):
        # Reuse runs calls on kept threads: not in the context a previous call left.
        self.assertEqual([self.w.execute("decimalctx")["output"] for _ in range(3)], [28, 28, 28])

    def test_no_http_library_loaded(self):
        # Reuse: the function runs in the server, which has only its own.
        r = self.w.execute("modules")
        self.assertEqual(r["output"], ["_qinling_runtime.httpserver", "_qinling_runtime.wire"], r)

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

    def test_no_http_library_loaded(self):
        # An execution process is forked from a zygote that never loads the server's modules.
        r = self.w.execute("modules")
        self.assertEqual(r["output"], [], r)

    def test_timing_reported(self):
        r = self.w.execute("hello")
        self.assertEqual(sorted(r["timing"]), ["acquire_ms", "import_ms", "run_ms", "server_ms"])


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


if __name__ == "__main__":
    unittest.main()
