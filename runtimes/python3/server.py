#!/usr/bin/python3
"""Qinling Python 3 worker server: runs one function's code for the Go engine.

Standard library only. Protocol, options and the modules of the runtime
(the private package _qinling_runtime beside this file) are described in
README.md. Startup imports are kept minimal (inspect/traceback/importlib
load lazily, and only the modules the isolation mode needs) because cold
start of a worker is on the hot path.

Two isolation modes (README.md, docs/isolation.md):
  reuse   every execution runs in a thread of this process (upstream's warm
          reuse: module globals, files and processes persist between calls);
  strict  this process is the server and forks, once, a zygote that has the
          runtime (and, when told to preload, the function's modules)
          imported; every execution runs in a fresh process forked from the
          zygote before the call arrives, confined (its own /tmp, no signals
          to the worker's processes), and is killed with everything it
          started once it has answered.
"""

import os
import sys


def _runtime():
    """Imports the runtime's package from this file's directory, which then
    leaves sys.path again (python3 -I never adds it): a function's modules
    must not be looked for there, nor ours among a function's."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        from _qinling_runtime import cli
    finally:
        sys.path.remove(here)
    return cli


if __name__ == "__main__":
    _runtime().main(sys.argv[1:], __file__)
