"""How every `nnctl` command ends when something goes wrong: one red line and an exit code, never a traceback.

`user_errors` maps the library's user errors to exit 2; `NnctlGroup` catches what reaches the top (Ctrl-C: 130).
"""

from __future__ import annotations

import functools
import os
import sys

import click

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _fail(lines, code: int = EXIT_USAGE):
    """One red line per problem on stderr, then exit with `code` (no traceback)."""
    for line in lines:
        click.secho(line, fg="red", err=True)
    sys.exit(code)


def user_errors(command):
    """Turns the library's user errors (bad config, bad input) into red lines and exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from nnctl.config.yamlfile import ConfigError
        from nnctl.errors import NnctlError
        try:
            return command(*args, **kwargs)
        except ConfigError as err:
            _fail([f"error: {issue}" for issue in err.issues])
        except NnctlError as err:
            _fail([f"error: {line}" for line in str(err).splitlines()])
    return wrapper


class NnctlGroup(click.Group):
    """The `nnctl` group: what reaches the top of any command is one line and an exit code, never a traceback.

    Ctrl-C (at any moment: loading, compiling, training, writing) exits 130 instead of click's `Aborted!`; an
    OSError is the path and its cause (exit 2, or 1 for a full disk); anything else is a bug, said in one line
    (NNCTL_TRACEBACK=1 shows the traceback).
    """

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except KeyboardInterrupt:  # while click parses, before its own handler
            _interrupted()
        finally:
            forget_caught_interrupts()

    def invoke(self, ctx):
        import signal
        import threading

        if sys.stdout is None:  # started with stdout closed (`nnctl runs >&-`): the output goes nowhere
            sys.stdout = open(os.devnull, "w")
        main_thread = threading.current_thread() is threading.main_thread()  # CliRunner tests may run elsewhere
        previous = signal.signal(signal.SIGINT, _on_ctrl_c) if main_thread else None
        previous_hook, sys.unraisablehook = sys.unraisablehook, functools.partial(_unraisable, sys.unraisablehook)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted()
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as error:
            _os_error(error)
        except MemoryError:
            _fail(["error: out of memory (try a smaller batch_size or model)"], EXIT_FAILED)
        except Exception as error:  # noqa: BLE001 (the promise is: never a traceback)
            if _CTRL_C_SEEN:  # a library turned the KeyboardInterrupt into its own error (pydantic's SchemaError)
                _interrupted()
            if os.environ.get("NNCTL_TRACEBACK"):
                raise
            _fail([f"error: internal error, a bug in nnctl ({type(error).__name__}: {str(error)[:200]}); please "
                   f"report it with the command line (NNCTL_TRACEBACK=1 shows where)"], EXIT_FAILED)
        finally:
            sys.unraisablehook = previous_hook
            if main_thread and previous is not None:
                signal.signal(signal.SIGINT, previous)


_CTRL_C_SEEN = False  # set by the handler: an error after a Ctrl-C is the Ctrl-C


def _in_library_callback(frame) -> bool:
    """Whether `frame` is code a library calls back into and whose exceptions it swallows with a printed
    traceback ("Exception ignored in …"): llvmlite's ctypes callbacks while kernels compile, importlib's
    module-lock weakref callback, and the config schema's discriminator functions, which pydantic-core calls."""
    name, file = getattr(frame.f_code, "co_name", ""), frame.f_code.co_filename.replace("\\", "/")
    schema = "nnctl/config/" in file or file.endswith("nnctl/runs/records.py")
    return ("llvmlite" in file or (file.startswith("<frozen importlib") and name == "cb")
            or (name in ("_tag_of", "<lambda>") and schema))


def _on_ctrl_c(signum, frame):
    """Python's own Ctrl-C, except inside a library's callback (`_in_library_callback`): there the
    KeyboardInterrupt's traceback would be printed and the interrupt swallowed, so it is raised again 10 ms
    later."""
    global _CTRL_C_SEEN
    _CTRL_C_SEEN = True
    if frame is not None and _in_library_callback(frame):
        _again_soon()
        return
    raise KeyboardInterrupt


def _again_soon():
    import _thread
    import threading

    again = threading.Timer(0.01, _thread.interrupt_main)
    again.daemon = True
    again.start()


def _unraisable(previous, unraisable):
    """`sys.unraisablehook` while a command runs: a Ctrl-C that landed in a callback not named by
    `_in_library_callback` (a weakref callback run by the garbage collector, such as Numba's type cache's) would
    be printed as "Exception ignored in …" and lost; it is raised again 10 ms later instead."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) or unraisable.exc_type is KeyboardInterrupt:
        _again_soon()
        return
    previous(unraisable)


def forget_caught_interrupts():
    """CPython (3.10 to 3.13 at least) marks a KeyboardInterrupt that escapes code run by `exec` of a string as
    unhandled, even when a caller catches it, and then ends the process by SIGINT (exit -2 instead of our 130, or
    instead of 0) after `python -m nnctl` returns. dataclasses and pydantic build their methods with `exec`
    while they import, so a Ctrl-C landing there did this (seen in CI: one line, then -2). Every `exec` of a string
    clears the mark before it runs, so an empty one forgets it."""
    exec("")  # noqa: S102 (an empty string: nothing runs)


def _interrupted():
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt this line
    _quiet_stdout()
    click.secho("interrupted (Ctrl-C)", fg="yellow", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _os_error(error: OSError):
    import errno

    if error.filename is None and _writing_stdout(error):  # stdout itself failed: a full disk or a closed pipe
        _quiet_stdout()
        if error.errno == errno.EPIPE:
            sys.exit(EXIT_FAILED)  # `nnctl runs | head -1`: the reader left, nothing to say
        _fail([f"error: cannot write the output (stdout): {error.strerror}"], EXIT_FAILED)
    where = f"{error.filename}: " if error.filename is not None else ""
    full = error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
    _fail([f"error: {where}{error.strerror or error}"], EXIT_FAILED if full else EXIT_USAGE)


def _writing_stdout(error: OSError) -> bool:
    """Whether `error` came from a write to stdout: a frame on its way up held stdout (click.echo's `file`, a
    rich Console's `file`). A failed write keeps no filename, and a second flush of /dev/full succeeds."""
    streams = {id(stream) for stream in (sys.stdout, getattr(sys.stdout, "buffer", None), sys.__stdout__)
               if stream is not None}
    tb = error.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if id(value) in streams or id(getattr(value, "file", None)) in streams:
                return True
        tb = tb.tb_next
    return False


def _quiet_stdout() -> bool:
    """True when stdout cannot take its pending output; it then goes to /dev/null, so exiting stays silent."""
    try:
        sys.stdout.flush()
        return False
    except (OSError, ValueError):
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return True
