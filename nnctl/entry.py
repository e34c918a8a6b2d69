"""The `nnctl` command's entry point (and `python -m nnctl`'s): the command line is imported under a Ctrl-C
guard, so an interrupt while it loads exits 130 with one line, as one at any later moment does."""

import sys


def main():
    try:
        from nnctl.cli import main as command_line
    except KeyboardInterrupt:
        sys.stderr.write("interrupted (Ctrl-C)\n")
        exec("")  # noqa: S102 (forgets a caught Ctrl-C, as nnctl.cli_errors.forget_caught_interrupts says)
        sys.exit(130)
    return command_line()
