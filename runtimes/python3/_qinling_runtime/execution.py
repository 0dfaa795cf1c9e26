"""Running a function: the /execute request, finding the entry (importing
its module once), calling it with its output captured, and the answer."""

import json
import os
import sys
import threading
import time

from . import config
from .compat import describe, failure_output, text_of
from .output import LogBuffer, current


class EntryError(Exception):
    """Problem locating the entry point; the message becomes the output."""


class Job:
    def __init__(self, eid, fid, version, entry, args, kwargs, timeout):
        self.eid, self.fid, self.version, self.entry = eid, fid, version, entry
        self.args, self.kwargs, self.timeout = args, kwargs, timeout
        self.log = LogBuffer(config.MAX_LOG_BYTES)
        self.ok, self.result, self.output, self.duration = False, None, None, 0.0
        self.resolve = 0.0   # seconds spent finding the entry (importing on a first call)


_load_lock = threading.Lock()   # replaced by reset_after_fork
_pkg = {"key": None, "path": None, "modules": {}}   # the function version being served


def reset_after_fork():
    """In a function zygote, forked while another thread may have held the
    import lock: a lock of its own."""
    global _load_lock
    _load_lock = threading.Lock()


def _switch_package(key, path):
    # The worker normally serves one function version for life. If asked for another,
    # forget the old package's modules so same-named modules are not mixed up.
    import importlib
    old = _pkg["path"]
    if old is not None:
        while old in sys.path:
            sys.path.remove(old)
        prefix = old + os.sep
        for name, mod in list(sys.modules.items()):
            if (getattr(mod, "__file__", None) or "").startswith(prefix):
                del sys.modules[name]
    _pkg.update(key=key, path=path, modules={})
    importlib.invalidate_caches()


def _load_module(job, mod_name):
    path = os.path.join(config.PACKAGES_DIR, job.fid)
    with _load_lock:   # one import at a time: simple, and imports happen once
        if _pkg["key"] != (job.fid, job.version):
            _switch_package((job.fid, job.version), path)
        module = _pkg["modules"].get(mod_name)
        if module is not None:
            return module
        if not os.path.isdir(path):
            raise EntryError("Function package not found for function %s." % job.fid)
        if path not in sys.path:
            sys.path.insert(0, path)
        try:   # __import__ (unlike importlib.import_module) hides importlib's frames
            __import__(mod_name)
            module = sys.modules[mod_name]
        except BaseException as e:
            _log_traceback(job.log, e)
            raise EntryError("Failed to import module '%s': %s" % (mod_name, describe(e)))
        _pkg["modules"][mod_name] = module   # warm reuse: module globals persist
        return module


def resolve(job):
    mod_name, _, func_name = job.entry.rpartition(".")
    if not mod_name or not func_name:
        raise EntryError("Invalid entry '%s': expected 'module.function'." % job.entry)
    module = _load_module(job, mod_name)
    func = getattr(module, func_name, None)
    if func is None and not hasattr(module, func_name):
        raise EntryError("Function '%s' not found in module '%s'." % (func_name, mod_name))
    if not callable(func):
        raise EntryError("Entry '%s' is not callable." % job.entry)
    return func


def accepts_context(func):
    """True if func takes a `context` keyword or **kwargs. Upstream always passed
    context, which broke plain `def main(name)`."""
    f = getattr(func, "__func__", func)
    code = getattr(f, "__code__", None)
    if code is not None and not hasattr(f, "__wrapped__"):   # fast path, no inspect
        if code.co_flags & 0x08:   # CO_VARKEYWORDS
            return True
        end = code.co_argcount + code.co_kwonlyargcount
        return "context" in code.co_varnames[code.co_posonlyargcount:end]
    import inspect   # decorated functions, classes, callable objects
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind == p.VAR_KEYWORD or (p.name == "context" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) for p in params)


def _log_traceback(log, e):
    import traceback
    tb = e.__traceback__.tb_next or e.__traceback__   # hide this file's frame
    log.add("".join(traceback.format_exception(type(e), e, tb)))


def run(job):
    """Resolve the entry and call it, capturing its output (a thread's body
    in reuse mode, the main thread of an execution process in strict mode)."""
    current.set(job.log)
    start = time.monotonic()
    try:
        func = resolve(job)
        job.resolve = time.monotonic() - start
        if accepts_context(func):
            job.kwargs["context"] = {"os_session": None}
        job.result = func(*job.args, **job.kwargs)
        job.ok = True
    except EntryError as e:
        job.output = str(e)
        job.log.add(job.output + "\n")
    except (SystemExit, KeyboardInterrupt) as e:   # must not stop the worker
        _log_traceback(job.log, e)
        detail = text_of(e)
        job.output = "Function raised %s%s." % (type(e).__name__, ": " + detail if detail else "")
    except BaseException as e:
        _log_traceback(job.log, e)
        job.output = failure_output(e)
    finally:
        job.duration = time.monotonic() - start


def response_body(eid, ok, result, failure, duration, text, dropped, note="", timing=None):
    """The /execute answer: output (the result, or the failure message),
    duration, the log framed as upstream's, success; with timing if given."""
    parts = ["Start execution: %s\n" % eid, text]
    if text and not text.endswith("\n"):
        parts.append("\n")
    if dropped:
        parts.append("... [log truncated: %d bytes dropped]\n" % dropped)
    parts += [note, "Finished execution: %s\n" % eid]

    if ok:
        try:
            output = json.dumps(result, allow_nan=False)   # ASCII: len == bytes
        except Exception as e:
            ok, output = False, json.dumps("Function result is not JSON serializable: %s" % e)
        else:
            if len(output) > config.MAX_RESULT_BYTES:
                ok, output = False, json.dumps("Function result too large: %d bytes (limit %d)."
                                               % (len(output), config.MAX_RESULT_BYTES))
    else:
        output = json.dumps(failure)
    # Assembled by hand so a large result is not encoded twice.
    body = '{"output": %s, "duration": %s, "logs": %s, "success": %s%s}' % (
        output, json.dumps(round(duration, 3)), json.dumps("".join(parts)),
        "true" if ok else "false", ', "timing": %s' % json.dumps(timing) if timing else "")
    return body.encode()


def timeout_body(job, elapsed, text, dropped, timing=None):
    return response_body(job.eid, False, None, "Function execution timeout.", elapsed, text, dropped,
                         "Execution timed out after %g seconds.\n" % job.timeout, timing)


class BadRequest(Exception):
    pass


def parse_job(req):
    if not isinstance(req, dict):
        raise BadRequest("request body must be a JSON object")

    def string(name, default=None):
        v = req.get(name)
        if v is None and default is not None:
            return default
        if not isinstance(v, str) or not v:
            raise BadRequest("%s is required and must be a non-empty string" % name)
        return v

    eid, fid, entry = string("execution_id"), string("function_id"), string("entry", "main.main")
    if "/" in fid or "\0" in fid or fid in (".", ".."):   # names a dir under packages-dir
        raise BadRequest("invalid function_id")
    version = req.get("function_version")
    version = 0 if version is None else version
    if type(version) is not int:
        raise BadRequest("function_version must be an integer")
    timeout = req.get("timeout")
    timeout = 5 if timeout is None else timeout
    if type(timeout) not in (int, float) or not 0 < timeout < float("inf"):
        raise BadRequest("timeout must be a positive number of seconds")
    data = req.get("input")
    args, kwargs = (), {}
    if isinstance(data, dict):
        kwargs = dict(data)
        if "__function_input" in kwargs:
            args = (kwargs.pop("__function_input"),)
    elif data is not None:   # lenient: a bare JSON value is the positional argument
        args = (data,)
    # cpu, memory_size, request_id, download_url: limits and downloads are the Go side's job.
    return Job(eid, fid, version, entry, args, kwargs, timeout)
