"""What functions written for upstream Qinling's Python runtime expect of
this one (README.md, "Compatibility with upstream's runtime")."""

import errno
import sys

# Upstream's output for an execution that failed for lack of resources (its
# process killed, or an OSError about a resource): clients compare it as is.
RESOURCE_OUTPUT = "Function execution failed because of too much resource consumption"


def lift_limits():
    """Lifts Python 3.11's limit on converting big integers to and from text
    (4,300 digits): upstream's interpreters had none, and functions printing
    or returning such numbers (a 50,000-digit pi) failed here without this.
    Called before the zygote forks, so every execution process inherits it."""
    set_digits = getattr(sys, "set_int_max_str_digits", None)
    if set_digits is not None:
        set_digits(0)


def is_resource_error(e):
    """True for what upstream reported as too much resource consumption: a
    fork or thread refused by a process limit (EAGAIN, "Resource temporarily
    unavailable"; a thread's refusal is a RuntimeError), or memory refused."""
    if isinstance(e, OSError):
        return e.errno == errno.EAGAIN
    if isinstance(e, RuntimeError):
        return type(e) is RuntimeError and text_of(e) == "can't start new thread"
    return isinstance(e, MemoryError)


def failure_output(e):
    """The output of an execution that raised e: upstream's standard message
    for a resource error, else the exception's type and upstream's text
    (str(e)), as a traceback's last line shows them."""
    if is_resource_error(e):
        return RESOURCE_OUTPUT
    return describe(e)


def describe(e):
    """'ValueError: bad input', or 'ValueError' for an empty message."""
    detail = text_of(e)
    name = type(e).__name__
    return "%s: %s" % (name, detail) if detail else name


def text_of(e):
    try:
        return str(e)
    except Exception:
        return ""
