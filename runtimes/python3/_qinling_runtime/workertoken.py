"""The worker token (README.md, "Worker token").

A pod's runtime server listens on the pod network, where other pods can
reach it too. With QINLING_WORKER_TOKEN=required (the Kubernetes
orchestrator sets it in every pool pod), POST requests must carry the
token of the engine that specialised the pod: the first POST /package
binds the token it carries, and every later POST must carry the same one.
Another pod's function, which does not know it, is refused before anything
is parsed, so it cannot run this worker's function, read which function it
is, or deliver a package of its own. GET /ping stays open (the kubelet's
readiness probe). Only a digest is kept, in the packages directory, so a
restarted container keeps refusing strangers.
"""

import os
import threading

from . import config

HEADER = "X-Qinling-Worker-Token"
TOKEN_FILE = ".qinling-token"
MIN_LENGTH = 32
_lock = threading.Lock()
_required = False
_digest = None


def setup():
    """Reads the mode from the environment and a digest bound before a restart."""
    global _required, _digest
    _required = os.environ.get("QINLING_WORKER_TOKEN", "") == "required"
    try:
        with open(os.path.join(config.PACKAGES_DIR, TOKEN_FILE)) as f:
            _digest = f.read().strip() or None
    except OSError:
        _digest = None


def refusal(path, token):
    """None if a POST to path with token may proceed, else why not."""
    global _digest
    if not _required:
        return None
    if not token or len(token) < MIN_LENGTH:
        return "worker token required"
    # Imported here, by the server only: hashlib loads libcrypto, whose
    # relocated data and modules would otherwise be in every strict-mode
    # zygote, copied (as page table entries) by each fork of an execution
    # process, and its import costs every worker's start tens of ms.
    import hashlib
    import hmac
    d = hashlib.sha256(token.encode()).hexdigest()
    with _lock:
        if _digest is None:
            if path != "/package":
                return "worker not specialised"
            _digest = d
            try:
                with open(os.path.join(config.PACKAGES_DIR, TOKEN_FILE), "w") as f:
                    f.write(d)
            except OSError:   # bound in memory all the same
                pass
            return None
    return None if hmac.compare_digest(d, _digest) else "worker token mismatch"
