"""Tests for the worker token (README.md, "Worker token"): the real server
with QINLING_WORKER_TOKEN=required on a temp unix socket.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import io
import json
import os
import shutil
import tempfile
import unittest
import zipfile
from unittest import mock

from harness import PACKAGES, Base, UnixConnection, Worker

TOKEN = "a" * 64
JOB = json.dumps({"execution_id": "e", "function_id": "fn-1", "function_version": 0,
                  "input": {"name": "pod"}}).encode()


class WorkerTokenTest(Base):
    def setUp(self):
        self.packages = tempfile.mkdtemp(prefix="qinling-pkgs-")
        self.w = self.start()

    def tearDown(self):
        self.w.stop()
        shutil.rmtree(self.packages, ignore_errors=True)

    def start(self):
        with mock.patch.dict(os.environ, {"QINLING_WORKER_TOKEN": "required"}):
            return Worker(self.packages)

    def post(self, path, body, token=None):
        conn = UnixConnection(self.w.sock)
        try:
            headers = {"X-Qinling-Worker-Token": token} if token else {}
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def push(self, token):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("main.py", PACKAGES["hello"]["main.py"])
        return self.post("/package?function_id=fn-1&function_version=0", buf.getvalue(), token)

    def test_free_worker_takes_nothing_without_a_token(self):
        self.assertEqual(self.push(None), (403, {"error": "worker token required"}))
        self.assertEqual(self.push("short")[0], 403)
        self.assertEqual(self.post("/execute", JOB, TOKEN), (403, {"error": "worker not specialised"}))
        self.assertEqual(self.w.request("GET", "/ping")[0], 200, "the readiness probe needs no token")

    def test_only_the_binding_token_is_served_also_after_a_restart(self):
        self.assertEqual(self.push(TOKEN)[0], 200)
        for _ in range(2):
            status, body = self.post("/execute", JOB)
            self.assertEqual(status, 403, body)
            self.assertNotIn("fn-1", json.dumps(body), "a stranger learns nothing of the function")
            self.assertEqual(self.post("/execute", JOB, "b" * 64), (403, {"error": "worker token mismatch"}))
            self.assertEqual(self.push("b" * 64)[0], 403, "no second package from a stranger")
            status, body = self.post("/execute", JOB, TOKEN)
            self.assertEqual((status, body["output"]), (200, "Hello, pod"))
            self.w.stop()   # a restarted container keeps its emptyDir
            self.w = self.start()


if __name__ == "__main__":
    unittest.main()
