"""The `nnctl` command's entry point (and `python -m nnctl`'s): the command line is imported under a Ctrl-C
guard, so an interrupt while it loads exits 130 with one line, as one at any later moment does; once the command
is over, Ctrl-C is ignored while Python exits."""

import signal
import sys


def main():
    try:
        from nnctl.cli import main as command_line
    except KeyboardInterrupt:
        sys.stderr.write("interrupted (Ctrl-C)\n")
        exec("")  # noqa: S102 (forgets a caught Ctrl-C, as nnctl.cli_errors.forget_caught_interrupts says)
        sys.exit(130)
    try:
        return command_line()
    finally:
        # The command is over, its output written and its exit code set: a Ctrl-C now would land in Python's
        # exit handlers (Numba's finalizers) as "Exception ignored in atexit callback" and a traceback (seen in
        # CI, 0.7 s into `nnctl check`).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
