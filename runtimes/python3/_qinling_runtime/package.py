"""Package delivery (POST /package).

A remote worker (a Kubernetes pod) gets its function's zip pushed by the
engine with POST /package and serves only that function version from then
on; a local worker has its package extracted by the Go side and never
gets /package, so it serves whatever /execute names.
"""

import json
import os
import threading

from . import config

MAX_UNPACKED_BYTES = 512 << 20   # as pkg/archive: bounds zip bombs
MAX_PACKAGE_FILES = 10000
SERVING_FILE = ".qinling-serving"   # in the packages dir: survives a container restart
_package_lock = threading.Lock()
_serving = None   # (function_id, version) given by /package, or None


def serving():
    """(function_id, version) this worker is dedicated to, or None."""
    return _serving


class PackageError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def load_serving():
    global _serving
    try:
        with open(os.path.join(config.PACKAGES_DIR, SERVING_FILE)) as f:
            d = json.load(f)
        _serving = (d["function_id"], int(d["function_version"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass


def _extract(data, dst):
    """Extract the zip bytes into the new directory dst: regular files and
    directories only, no absolute or .. paths, bounded file count and size
    (counted while writing: a zip's sizes can lie)."""
    import io
    import stat
    import zipfile
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise PackageError(400, "package is not a valid zip file: %s" % e)
    infos = zf.infolist()
    if len(infos) > MAX_PACKAGE_FILES:
        raise PackageError(413, "package has %d entries (limit %d)" % (len(infos), MAX_PACKAGE_FILES))
    total = 0
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if (not name or name.startswith("/") or "\\" in name or "\0" in name
                or any(p in ("", ".", "..") for p in parts)):
            raise PackageError(400, "package entry %r: unsafe path" % name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir():
            os.makedirs(os.path.join(dst, *parts), mode=0o755, exist_ok=True)
            continue
        if kind not in (0, stat.S_IFREG):
            raise PackageError(400, "package entry %r: not a regular file" % name)
        path = os.path.join(dst, *parts)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            with zf.open(info) as src, open(path, "xb") as out:
                while True:
                    chunk = src.read(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > MAX_UNPACKED_BYTES:
                        raise PackageError(413, "package unpacks to more than %d bytes" % MAX_UNPACKED_BYTES)
                    out.write(chunk)
        except FileExistsError:
            raise PackageError(400, "package entry %r: duplicate path" % name)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError) as e:   # includes CRC errors
            raise PackageError(400, "package entry %r: %s" % (name, e))
        os.chmod(path, 0o644)


def install_package(fid, version, md5, data):
    """POST /package: check, extract into config.PACKAGES_DIR/<fid>, dedicate this
    worker to (fid, version). Delivering the same package again is a no-op."""
    global _serving
    import hashlib
    import shutil
    import tempfile
    if not fid or "/" in fid or "\0" in fid or fid in (".", "..") or fid.startswith("."):
        raise PackageError(400, "invalid function_id")
    if md5 and hashlib.md5(data).hexdigest() != md5.lower():
        raise PackageError(400, "package checksum mismatch (md5 %s expected)" % md5)
    with _package_lock:
        final = os.path.join(config.PACKAGES_DIR, fid)
        if _serving == (fid, version) and os.path.isdir(final):
            return
        if _serving is not None:
            raise PackageError(409, "worker already serves function %s version %d" % _serving)
        os.makedirs(config.PACKAGES_DIR, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".pkg-", dir=config.PACKAGES_DIR)
        try:
            _extract(data, tmp)
            os.chmod(tmp, 0o755)
            if os.path.lexists(final):
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with open(os.path.join(config.PACKAGES_DIR, SERVING_FILE + ".tmp"), "w") as f:
            json.dump({"function_id": fid, "function_version": version}, f)
        os.rename(os.path.join(config.PACKAGES_DIR, SERVING_FILE + ".tmp"), os.path.join(config.PACKAGES_DIR, SERVING_FILE))
        _serving = (fid, version)
