"""The Python 3 runtime server's modules (runtimes/python3/README.md).

A private package name, loaded by server.py from beside itself before any
function runs: a function's own modules (main.py, utils.py, ...) can neither
shadow these nor import them by accident.
"""
