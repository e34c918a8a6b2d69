"""Progress callbacks: the kept epoch line, plain vs live output, refresh throttling, mode choice, start-up phases."""

import io
import re
import time

import numpy as np
import pytest

from nnctl.errors import ArgumentError
from nnctl.nn.callbacks import Callback
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
from nnctl.train import progress
from nnctl.train.progress import (LiveProgress, PlainProgress, QuietProgress, format_duration, format_metrics,
                                  make_progress)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
NUMBER = r"(-?\d+\.\d{4}|nan|-?inf)"
EPOCH_LINE = re.compile(rf"^Epoch \d+/\d+ - \S+ - loss: {NUMBER}( - \w+: {NUMBER})*( - lr: \d\.\d{{4}}e[-+]\d+)?$")
FIRST_LINE = "Epoch 1/3 - 624us/step - loss: 0.5000 - accuracy: 0.8000 - val_loss: 0.6000 - val_accuracy: 0.7500"
PARAMS = {"epochs": 3, "steps": 50, "samples": 400, "batch_size": 8, "initial_epoch": 0}


def screen(text):
    """The lines a terminal shows after `text`, for the few controls rich's live display uses."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", text):
        if token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif re.fullmatch(r"\x1b\[\d*A", token):
            row -= int(token[2:-1] or 1)
        elif not token.startswith("\x1b"):  # colours and cursor visibility change nothing on screen
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


class TtyStringIO(io.StringIO):
    def isatty(self):
        return True


def epoch_logs(epoch, lr=1e-3):
    return {"loss": 0.5 / (epoch + 1), "accuracy": 0.8 + epoch / 100, "val_loss": 0.6, "val_accuracy": 0.75,
            "epoch_time": 0.0312, "lr": lr}


def drive(reporter, lrs=(1e-3, 1e-3, 1e-4), batch_ends=(9, 29, 49)):
    """The hook sequence `Sequential.fit` makes, without a model."""
    reporter.set_params(PARAMS)
    reporter.on_train_begin()
    for epoch, lr in enumerate(lrs):
        reporter.on_epoch_begin(epoch)
        if reporter.wants_batches:
            for batch in batch_ends:
                reporter.on_train_batch_end(batch, {"loss": 0.7, "accuracy": 0.5})
        reporter.on_epoch_end(epoch, epoch_logs(epoch, lr))
    reporter.on_train_end()


def test_plain_prints_exactly_one_clean_line_per_epoch():
    out = io.StringIO()
    reporter = make_progress(out, "plain")
    assert isinstance(reporter, PlainProgress) and not reporter.wants_batches
    drive(reporter)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 3 and all(EPOCH_LINE.match(line) for line in lines), lines
    assert lines[0] == FIRST_LINE
    assert "lr" not in lines[1]
    assert lines[2].endswith(" - lr: 1.0000e-04")


def test_lr_is_shown_only_on_the_epoch_it_changes():
    out = io.StringIO()
    drive(make_progress(out, "plain"), lrs=(1e-3, 5e-4, 5e-4))
    assert [" - lr: " in line for line in out.getvalue().splitlines()] == [False, True, False]


@pytest.mark.parametrize("seconds, text", [(0.0312, "0.03s"), (9.994, "9.99s"), (12.4, "12.4s"), (65.2, "1m05s"),
                                           (3725, "1h02m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_metrics_skips_time_lr_and_non_numbers_and_spells_nan_inf():
    logs = {"loss": np.float32(0.25), "mae": float("nan"), "val_loss": float("inf"), "epoch_time": 1.0, "lr": 0.1,
            "stopped": True, "note": "x"}
    assert format_metrics(logs) == "loss: 0.2500 - mae: nan - val_loss: inf"


def test_auto_mode_follows_isatty():
    assert isinstance(make_progress(io.StringIO()), PlainProgress)
    live = make_progress(TtyStringIO())
    assert isinstance(live, LiveProgress) and live.wants_batches


def test_bad_mode_names_the_allowed_ones():
    with pytest.raises(ArgumentError, match="`mode`.*auto, live, plain, quiet"):
        make_progress(io.StringIO(), "fancy")


def test_quiet_prints_nothing():
    out = io.StringIO()
    reporter = make_progress(out, "quiet")
    assert isinstance(reporter, QuietProgress)
    drive(reporter)
    reporter.note("compiling kernels")
    assert out.getvalue() == ""


def test_note_prints_one_line_in_plain_mode():
    out = io.StringIO()
    make_progress(out, "plain").note("compiling kernels … 3.1 s (cached for next time)")
    assert out.getvalue() == "compiling kernels … 3.1 s (cached for next time)\n"


def test_live_keeps_one_line_per_epoch_and_removes_the_bar():
    out = io.StringIO()
    reporter = make_progress(out, "live")
    drive(reporter)
    kept = screen(out.getvalue())
    assert len(kept) == 3 and all(EPOCH_LINE.match(line) for line in kept), kept
    assert kept[2].endswith(" - lr: 1.0000e-04")
    assert "steps/s" in ANSI.sub("", out.getvalue())  # the bar was drawn, then erased
    assert not reporter._progress.live.is_started


def test_live_kept_lines_match_plain_ones():
    plain_out, live_out = io.StringIO(), io.StringIO()
    drive(make_progress(plain_out, "plain"))
    drive(make_progress(live_out, "live"))
    assert screen(live_out.getvalue()) == plain_out.getvalue().splitlines()


def test_live_note_goes_above_the_bar_in_order():
    out = io.StringIO()
    reporter = make_progress(out, "live")
    reporter.set_params(PARAMS)
    reporter.on_train_begin()
    reporter.on_epoch_begin(0)
    reporter.on_epoch_end(0, epoch_logs(0))
    reporter.note("checkpoint saved")
    reporter.close()
    reporter.close()  # idempotent
    shown = screen(out.getvalue())
    assert len(shown) == 2 and shown[0] == FIRST_LINE and shown[1] == "checkpoint saved"


def test_live_refresh_is_throttled(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock["now"])
    reporter = make_progress(io.StringIO(), "live")
    draws = []
    real_draw = reporter._progress.draw
    monkeypatch.setattr(reporter._progress, "draw", lambda: (draws.append(clock["now"]), real_draw()))
    reporter.set_params({**PARAMS, "steps": 2000})
    reporter.on_train_begin()
    reporter.on_epoch_begin(0)
    for batch in range(1000):  # 1000 batch ends within 0.1 s
        clock["now"] += 0.0001
        reporter.on_train_batch_end(batch, {"loss": 0.5})
    assert len(draws) <= 1
    for batch in range(1000, 2000):  # 1000 more over 2 s: about REFRESH_INTERVAL apart
        clock["now"] += 0.002
        reporter.on_train_batch_end(batch, {"loss": 0.5})
    assert 6 <= len(draws) <= 10
    assert min(np.diff(draws)) >= progress.REFRESH_INTERVAL - 1e-9
    reporter.close()


def test_live_stopped_mid_epoch_closes_cleanly():
    out = io.StringIO()
    reporter = make_progress(out, "live")
    reporter.set_params(PARAMS)
    reporter.on_train_begin()
    reporter.on_epoch_begin(0)
    reporter.on_epoch_end(0, epoch_logs(0))
    reporter.on_epoch_begin(1)
    reporter.on_train_batch_end(9, {"loss": 0.4})
    reporter.on_train_end()  # fit breaks out of epoch 2 without on_epoch_end
    assert screen(out.getvalue()) == [FIRST_LINE]
    assert not reporter._progress.live.is_started


def tiny_model():
    model = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=0)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    return model


RNG = np.random.default_rng(0)
X = RNG.standard_normal((40, 5)).astype(np.float32)
Y = (X @ RNG.standard_normal(5)).astype(np.float32)


def test_plain_progress_on_a_real_fit():
    out = io.StringIO()
    history = tiny_model().fit(X, Y, epochs=3, batch_size=8, validation_data=(X, Y), callbacks=[PlainProgress(out)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(EPOCH_LINE.match(line) for line in lines), lines
    for line, loss, val_mae in zip(lines, history["loss"], history["val_mae"]):
        assert f"loss: {loss:.4f} - mae: " in line and line.endswith(f"val_mae: {val_mae:.4f}")


def test_live_progress_on_a_real_fit_stopped_by_a_batch_callback():
    class StopInSecondEpoch(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = self.epoch == 1

    out = TtyStringIO()
    reporter = make_progress(out)
    history = tiny_model().fit(X, Y, epochs=3, batch_size=2, callbacks=[reporter, StopInSecondEpoch()])
    # Whether the stop lands mid-epoch depends on chunk timing; either way one kept line per finished epoch.
    shown = screen(out.getvalue())
    assert len(shown) == len(history["loss"]) in (1, 2) and not reporter._progress.live.is_started
    for line, loss in zip(shown, history["loss"]):
        assert re.fullmatch(rf"Epoch \d/3 - \S+ - loss: {loss:.4f} - mae: \d\.\d{{4}}", line), shown


def test_plain_progress_survives_a_closed_pipe():
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    progress = make_progress(ClosedPipe(), "plain")
    progress.set_params({"epochs": 2})
    progress.on_epoch_end(0, {"loss": 0.5, "epoch_time": 0.01, "lr": 0.001})
    progress.on_epoch_end(1, {"loss": 0.4, "epoch_time": 0.01, "lr": 0.001})  # no second attempt, no error
    assert progress.stream is None


# ---- start-up phases, step times, K-fold bars ----------------------------------------------------------
PHASE_LINE = re.compile(r"^loading data … \d+\.\d\d s$")


@pytest.mark.parametrize("seconds, shown", [(0.0312, "624us/step"), (0.5, "10ms/step"), (0.95, "19ms/step"),
                                            (1.0, "1.00s"), (12.34, "12.3s")])
def test_epochs_shorter_than_a_second_show_the_time_per_step(seconds, shown):
    reporter = make_progress(io.StringIO(), "plain")
    reporter.set_params(PARAMS)  # 50 steps an epoch
    assert reporter.epoch_line(0, {"loss": 0.5, "epoch_time": seconds}) == f"Epoch 1/3 - {shown} - loss: 0.5000"


def test_plain_phase_prints_one_line_when_it_ends_and_none_when_it_fails():
    out = io.StringIO()
    reporter = make_progress(out, "plain")
    with reporter.phase("loading data"):
        assert out.getvalue() == ""  # off a terminal nothing is drawn while it runs
    assert PHASE_LINE.match(out.getvalue().rstrip("\n")), out.getvalue()
    with reporter.phase("compiling kernels") as shown:
        shown.finish("compiling kernels … 3.1 s (cached for next time)")
    with pytest.raises(KeyError), reporter.phase("loading data"):
        raise KeyError("x")
    assert out.getvalue().splitlines()[1:] == ["compiling kernels … 3.1 s (cached for next time)"]


def test_live_phase_shows_a_spinner_and_the_elapsed_time_while_it_runs():
    out = TtyStringIO()
    reporter = make_progress(out)
    with reporter.phase("compiling kernels") as shown:
        time.sleep(0.45)  # rich redraws 8 times a second from its own thread
        drawn = ANSI.sub("", out.getvalue())
        shown.finish("compiling kernels … 0.4 s (cached for next time)")
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] compiling kernels … 0\.[1-9] s", drawn), drawn
    assert reporter._spinner is None  # the refresh thread is gone
    assert screen(out.getvalue()) == ["compiling kernels … 0.4 s (cached for next time)"]


def test_quiet_phase_prints_nothing():
    out = io.StringIO()
    with make_progress(out, "quiet").phase("loading data"):
        pass
    assert out.getvalue() == ""


def test_phase_of_works_with_any_progress_callback():
    class Notes(Callback):
        def __init__(self):
            self.lines = []

        def note(self, text):
            self.lines.append(text)

    notes = Notes()
    with progress.phase_of(notes, "loading data"):
        pass
    with progress.phase_of(None, "loading data"):  # no progress at all
        pass
    assert len(notes.lines) == 1 and PHASE_LINE.match(notes.lines[0])


def test_live_bar_labels_the_eta_and_a_fold_keeps_no_epoch_lines(monkeypatch):
    monkeypatch.setattr(progress, "REFRESH_INTERVAL", 0.0)
    out = io.StringIO()
    reporter = make_progress(out, "live", label="fold 2/4", keep=("phases",))
    with reporter.phase("loading data"):
        pass
    drive(reporter)
    raw = ANSI.sub("", out.getvalue())
    assert "fold 2/4 · Epoch 3/3" in raw and "ETA " in raw  # the live bar
    kept = screen(out.getvalue())
    assert len(kept) == 1 and PHASE_LINE.match(kept[0]), kept  # no epoch lines: the CLI keeps one per fold
