"""`nnctl.cli_errors`: the Ctrl-C handler of the command line defers an interrupt that lands inside llvmlite."""

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
