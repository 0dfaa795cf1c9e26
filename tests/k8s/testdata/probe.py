"""A hostile function (tests/k8s/hostile_test.go): it tries what the input
names from inside its pod and returns, for each probe, "open: ..." when it
got through or "closed: ..." with what stopped it."""

import json
import os
import socket
import urllib.request


def connect(target):
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
        return "open: connected to %s" % target
    except OSError as e:
        return "closed: %s" % e
    finally:
        s.close()


def post(target):
    """POST /execute to a runtime server, as the engine would but without its token."""
    body = json.dumps({"execution_id": "stolen", "function_id": "guess", "function_version": 0,
                       "entry": "main.main", "input": None, "timeout": 5}).encode()
    req = urllib.request.Request("http://%s/execute" % target, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return "open: %d %s" % (r.status, r.read(300))
    except urllib.error.HTTPError as e:
        text = e.read(300)
        if e.code == 410:   # it named the function it serves
            return "open: %d %s" % (e.code, text)
        return "closed: %d %s" % (e.code, text)
    except OSError as e:
        return "closed: %s" % e


def read(path):
    try:
        with open(path, "rb") as f:
            return "open: read %d bytes" % len(f.read(4096))
    except OSError as e:
        return "closed: %s" % e


def write(path):
    try:
        with open(path, "ab") as f:
            f.write(b"x" * (1 << 20))
        return "open: wrote 1 MiB"
    except OSError as e:
        return "closed: %s" % e


def resolve(name):
    try:
        return "open: %s" % socket.gethostbyname(name)
    except OSError as e:
        return "closed: %s" % e


def caps(_):
    with open("/proc/self/status") as f:
        st = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    if os.getuid() == 0 or st["CapEff"].strip("0\n ") or st.get("Seccomp", "0").strip() == "0" or st["NoNewPrivs"].strip() != "1":
        return "open: uid %d CapEff %s Seccomp %s NoNewPrivs %s" % (os.getuid(), st["CapEff"], st.get("Seccomp"), st["NoNewPrivs"])
    return "closed: uid %d, no capabilities, seccomp, no new privileges" % os.getuid()


def ps(_):
    """Processes this pod sees besides its own runtime's (the node's, other pods')."""
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd and "server.py" not in cmd and "server.js" not in cmd and "qinling" not in cmd:
                seen.append(cmd[:80])
    return "open: %s" % seen if seen else "closed: only the runtime's own processes"


KINDS = {"connect": connect, "post": post, "read": read, "write": write, "resolve": resolve, "caps": caps, "ps": ps}


def main(probes=None, **kwargs):
    return {name: KINDS[kind](target) for name, (kind, target) in sorted((probes or {}).items())}
