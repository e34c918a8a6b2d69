"""`nnctl.cli_errors`: the Ctrl-C handler defers an interrupt that lands inside a library callback."""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace

import pytest

from nnctl.cli_errors import _on_ctrl_c


def frame_in(filename: str):
    return SimpleNamespace(f_code=SimpleNamespace(co_filename=filename))


def test_ctrl_c_outside_llvmlite_raises_at_once():
    with pytest.raises(KeyboardInterrupt):
        _on_ctrl_c(2, frame_in("/site-packages/nnctl/train/session.py"))


def test_ctrl_c_inside_llvmlite_comes_again_10_ms_later():
    """In a ctypes callback (llvmlite's object cache) a KeyboardInterrupt would be printed and swallowed."""
    # interrupt_main goes through the SIGINT handler in place: an earlier in-process Ctrl-C test may have left
    # it ignored (the CLI ignores a second Ctrl-C while it prints its line), so this test sets Python's own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _on_ctrl_c(2, frame_in("/site-packages/llvmlite/binding/executionengine.py"))  # returns: no raise here
        with pytest.raises(KeyboardInterrupt):
            time.sleep(1.0)  # interrupt_main arrives after ~10 ms, through Python's own SIGINT handler
    finally:
        signal.signal(signal.SIGINT, previous)


LOST_IN_A_WEAKREF_CALLBACK = """
import signal, sys, time, weakref
import click
from nnctl.cli_errors import NnctlGroup

@click.group(cls=NnctlGroup)
def group():
    pass

@group.command()
def work():
    class Thing:
        pass

    def on_disposal(_):  # as Numba's type cache's weakref callback, run by the garbage collector
        signal.raise_signal(signal.SIGINT)  # Python's handler runs at the next bytecode: still in here
        sum(range(1000))

    thing = Thing()
    ref = weakref.ref(thing, on_disposal)
    del thing
    time.sleep(2.0)
    print("not interrupted", ref)

group()
"""


def test_ctrl_c_inside_a_weakref_callback_is_not_lost():
    """CI saw `nnctl check` print "Exception ignored in: <function _on_type_disposal …>" with a KeyboardInterrupt
    traceback, then finish with exit 0: the Ctrl-C was raised inside Numba's weakref callback and swallowed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOST_IN_A_WEAKREF_CALLBACK, "work"], capture_output=True,
                          text=True, timeout=60)
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130 and "not interrupted" not in done.stdout, (done.returncode, done.stdout)
    assert [line for line in done.stderr.splitlines() if line.strip()] == ["interrupted (Ctrl-C)"]
