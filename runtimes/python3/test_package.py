"""Tests for POST /package: start the real server on a temp unix socket and talk HTTP.

Run from the repo root:
    /usr/bin/python3 -m unittest discover -s runtimes/python3 -p 'test_*.py'
"""

import json
import os
import shutil
import tempfile
import unittest

from harness import PACKAGES, Base, Worker


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
