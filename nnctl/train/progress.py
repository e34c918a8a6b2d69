"""Training progress as callbacks: a live `rich` bar on a terminal, one plain line per epoch elsewhere.

Owns the Keras-style kept epoch line (`Epoch 3/20 - 3ms/step - loss: 0.2134 - ...`), the start-up phases
(`loading data`, `compiling kernels`: a spinner while they run) and `make_progress`.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.measure import Measurement
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.spinner import Spinner
from rich.table import Column
from rich.text import Text

from nnctl.errors import ArgumentError
from nnctl.nn.callbacks import Callback

MODES = ("auto", "live", "plain", "quiet")
# A few redraws a second look live; batch hooks can fire far more often than that early in an epoch.
REFRESH_INTERVAL = 0.25
HIDDEN_KEYS = ("epoch_time", "lr")
KEPT = ("phases", "epochs")  # the kinds of kept lines; K-fold keeps no epoch lines (one line per fold instead)


def make_progress(stream=None, mode: str = "auto", label: str | None = None,
                  keep: tuple = KEPT) -> "ProgressReporter":
    """The progress callback for `stream` (default stdout): live on a terminal, plain otherwise.
    `label` (e.g. `fold 2/4`) prefixes the bar's epoch; `keep` says which kept lines are printed."""
    if mode not in MODES:
        raise ArgumentError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}.")
    stream = stream if stream is not None else sys.stdout
    if mode == "auto":
        mode = "live" if is_terminal(stream) else "plain"
    reporter = {"live": LiveProgress, "plain": PlainProgress, "quiet": QuietProgress}[mode](stream)
    reporter.label, reporter.keep = label, tuple(keep)
    return reporter


def phase_of(progress, label: str):
    """`progress.phase(label)`, for any progress callback: one without `phase` gets the kept line as a note."""
    if hasattr(progress, "phase"):
        return progress.phase(label)
    return _noted_phase(progress, label)


@contextmanager
def _noted_phase(progress, label: str):
    shown = Phase(label)
    yield shown
    if hasattr(progress, "note"):
        progress.note(shown.line())


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def format_step_time(seconds: float, steps: int) -> str:
    """Keras's `3ms/step` (or `250us/step`): an epoch's time per step, for epochs shorter than a second."""
    per_step = seconds / max(1, steps)
    if per_step < 1e-3:
        return f"{per_step * 1e6:.0f}us/step"
    return f"{per_step * 1e3:.0f}ms/step"


@dataclass
class Phase:
    """One start-up step (`loading data`, `compiling kernels`) while it runs; `finish(text)` sets the kept line."""

    label: str
    began: float = field(default_factory=time.perf_counter)
    text: str | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def finish(self, text: str) -> None:
        self.text = text

    def line(self) -> str:
        return self.text or f"{self.label} … {self.elapsed():.2f} s"


def format_duration(seconds: float) -> str:
    """`0.03s`, `12.4s`, `1m05s`, `2h03m`: short and of roughly constant precision."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_metrics(logs: dict) -> str:
    """`loss: 0.2134 - accuracy: 0.9123`: every number in `logs` but the time and learning rate, in order."""
    return " - ".join(f"{key}: {float(value):.4f}" for key, value in logs.items()
                      if key not in HIDDEN_KEYS and isinstance(value, numbers.Real) and not isinstance(value, bool))


class ProgressReporter(Callback):
    """Base of the progress callbacks: builds the kept epoch line; a subclass overrides `_emit(line)`
    (and `close()` if it holds a display). `note(text)` prints one informational line the same way;
    `close()` is safe to call twice. As a context manager it also closes when fit raises:

        with make_progress() as progress:
            progress.note("compiling kernels ... 3.1 s")
            model.fit(x, y, epochs=20, callbacks=[progress])
    """

    label: str | None = None
    keep: tuple = KEPT

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self._last_lr = None

    def on_train_begin(self, logs=None):
        self._last_lr = None

    def on_epoch_end(self, epoch, logs=None):
        if "epochs" in self.keep:
            self._emit(self.epoch_line(epoch, logs or {}))

    def on_train_end(self, logs=None):
        self.close()

    def epoch_line(self, epoch: int, logs: dict) -> str:
        """The kept line for 0-based `epoch`; remembers the learning rate to show only its changes."""
        parts = [self.epoch_label(epoch)]
        if "epoch_time" in logs:
            seconds = float(logs["epoch_time"])
            # Keras's `3ms/step` where the epoch's own time would read `0.00s`.
            parts.append(format_duration(seconds) if seconds >= 1 or "steps" not in self.params
                         else format_step_time(seconds, self.params["steps"]))
        figures = format_metrics(logs)
        if figures:
            parts.append(figures)
        lr = logs.get("lr")
        if lr is not None:
            lr = float(lr)
            if self._last_lr is not None and lr != self._last_lr:
                parts.append(f"lr: {lr:.4e}")
            self._last_lr = lr
        return " - ".join(parts)

    def epoch_label(self, epoch: int) -> str:
        label = f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        return f"{self.label} · {label}" if self.label else label

    def note(self, text: str) -> None:
        self._emit(str(text))

    @contextmanager
    def phase(self, label: str):
        """Shows `label` while the block runs (live: a spinner and the elapsed time) and keeps one line when it
        ends, `label … 1.23 s` or the text given to `phase.finish(text)`; nothing is kept when it raises.

            with progress.phase("compiling kernels") as shown:
                shown.finish(warm_up(...).describe())
        """
        shown = Phase(label)
        self._phase_begin(shown)
        try:
            yield shown
        except BaseException:
            self._phase_end(shown, kept=False)
            raise
        self._phase_end(shown, kept="phases" in self.keep)

    def _phase_begin(self, phase: Phase) -> None: ...

    def _phase_end(self, phase: Phase, kept: bool) -> None:
        if kept:
            self.note(phase.line())

    def close(self) -> None: ...

    def _emit(self, line: str) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class PlainProgress(ProgressReporter):
    """One line per epoch, nothing else: safe for CI logs, files and pipes. Has no batch hooks, so fit
    keeps its one-call-per-epoch fast path."""

    def _emit(self, line: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:  # `nnctl train … | head`: the reader left; training goes on, silently
            self.stream = None


class QuietProgress(ProgressReporter):
    """Prints nothing at all (not even notes)."""

    def _emit(self, line: str) -> None:
        pass


class StepRateColumn(ProgressColumn):
    """Steps per second since the epoch began (rich's own estimate needs more samples than we feed it)."""

    def render(self, task) -> Text:
        seconds = task.finished_time if task.finished else task.elapsed
        rate = f"{task.completed / seconds:.1f}" if seconds and task.completed else "?"
        return Text(f"{rate} steps/s", style="progress.data.speed", no_wrap=True)


class LabelledTimeRemaining(TimeRemainingColumn):
    """rich's time-remaining column, said to be one: `ETA 0:00:12`."""

    def render(self, task) -> Text:
        shown = super().render(task)
        return Text(f"ETA {shown.plain}", style=shown.style, no_wrap=True)


class PhaseSpinner:
    """`⠋ compiling kernels … 2.4 s`, redrawn by rich's Live a few times a second while the phase runs."""

    def __init__(self, phase: Phase):
        self.phase, self.spinner = phase, Spinner("dots", style="progress.spinner")

    def __rich_console__(self, console, options):
        self.spinner.text = Text(f"{self.phase.label} … {self.phase.elapsed():.1f} s")
        yield self.spinner


class SqueezableText:
    """One line that rich's table may cut to an ellipsis; a plain long string wraps or crushes the others."""

    def __init__(self, text: str):
        self.text = Text(text, no_wrap=True, overflow="ellipsis")

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(0, self.text.cell_len)

    def __rich_console__(self, console, options):
        yield self.text


class MetricsColumn(ProgressColumn):
    """The running `loss: 0.1234 - accuracy: 0.9...`, cut to the room left on the line."""

    def render(self, task) -> SqueezableText:
        return SqueezableText(task.fields.get("metrics", ""))


class ManualProgress(Progress):
    """rich's Progress that draws only on `draw()`: stock add_task/reset redraw on every call when
    auto_refresh is off, which would cost a render per epoch."""

    def refresh(self) -> None:
        pass

    def draw(self) -> None:
        super().refresh()


class LiveProgress(ProgressReporter):
    """A `rich` bar for the running epoch under the kept lines of the finished ones (like Keras's Progbar).

    All drawing happens in the hooks, at most every REFRESH_INTERVAL seconds: no background thread, a
    hook that does not redraw costs one clock read, and kept lines of epochs shorter than the interval
    are printed together at the next redraw (or at `close`).
    """

    def __init__(self, stream=None):
        super().__init__(stream)
        self.console = Console(file=self.stream, force_terminal=True)
        fixed = Column(no_wrap=True)
        self._progress = ManualProgress(
            TextColumn("{task.description}", table_column=fixed), BarColumn(bar_width=30),
            MofNCompleteColumn(table_column=fixed), TimeElapsedColumn(table_column=fixed),
            LabelledTimeRemaining(table_column=fixed), StepRateColumn(table_column=fixed), MetricsColumn(),
            console=self.console, auto_refresh=False, transient=True)
        self._task = self._spinner = None
        self._pending: list[str] = []
        self._done, self._running, self._refreshed_at = 0, {}, -math.inf

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._task is not None:  # a second fit on the same reporter starts from a clean bar
            self._progress.remove_task(self._task)
        first = self.epoch_label(self.params.get("initial_epoch", 0))
        self._task = self._progress.add_task(first, total=self.params.get("steps"), metrics="")
        self._progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._done, self._running = 0, {}
        self._progress.reset(self._task, total=self.params.get("steps"), metrics="",
                             description=self.epoch_label(epoch))

    def on_train_batch_end(self, batch, logs=None):
        self._done, self._running = batch + 1, logs or {}
        self._maybe_refresh()

    def on_epoch_end(self, epoch, logs=None):
        self._done, self._running = self.params.get("steps", self._done), logs or {}
        super().on_epoch_end(epoch, logs)
        self._maybe_refresh()

    def note(self, text: str) -> None:
        self._pending.append(str(text))
        self._print_pending()

    def _phase_begin(self, phase: Phase) -> None:
        self._print_pending()
        # A background refresh: the phase is one long call (Numba compiling) with no hook to draw from.
        self._spinner = Live(PhaseSpinner(phase), console=self.console, refresh_per_second=8, transient=True)
        self._spinner.start()

    def _phase_end(self, phase: Phase, kept: bool) -> None:
        self._stop_spinner()
        super()._phase_end(phase, kept)

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def close(self) -> None:
        self._stop_spinner()
        self._print_pending()
        # transient=True: stopping removes the bar, so a run stopped mid-epoch leaves only kept lines.
        if self._progress.live.is_started:
            self._progress.stop()

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed_at < REFRESH_INTERVAL or self._task is None:
            return
        train_only = {k: v for k, v in self._running.items() if not k.startswith("val_")}
        self._progress.update(self._task, completed=self._done, metrics=format_metrics(train_only))
        self._progress.draw()
        self._print_pending()
        self._refreshed_at = now

    def _print_pending(self) -> None:
        # Printing through the console puts the lines above the live bar instead of through it.
        if self._pending:
            self.console.print("\n".join(self._pending), markup=False, highlight=False, soft_wrap=True)
            self._pending.clear()

    def _emit(self, line: str) -> None:
        self._pending.append(line)
