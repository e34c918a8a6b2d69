"""Callbacks that record each epoch: a CSV file and TensorBoard event files."""

from __future__ import annotations

import csv
import itertools
import os
import warnings
from pathlib import Path

import numpy as np

from nnctl.errors import ArgumentError, NnctlError, show
from nnctl.nn.callbacks.base import Callback
from nnctl.nn.callbacks.paths import confine
from nnctl.nn.schedules import check_bool


class CSVLogger(Callback):
    """Writes one row per epoch to a CSV file: `epoch` (0-based, as Keras) then the logs' keys, sorted.

    The header is written once: appending (`append=True`, or a resumed run) to a file that already has
    one reuses its columns. Each row is flushed, so a crash loses nothing. A resumed run first drops the
    rows of the epochs it is about to redo (those written after its checkpoint was taken).

    Example:
        CSVLogger("history.csv", append=True)
    """

    def __init__(self, filename="history.csv", separator=",", append=False):
        if not isinstance(filename, (str, os.PathLike)) or not str(filename):
            raise ArgumentError(f"`filename` must be a file name, got {show(filename)}.")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ArgumentError(f"`separator` must be a single character, got {show(separator)}.")
        self.filename, self.separator = str(filename), separator
        self.append = check_bool("append", append)
        self._file = self._writer = None
        self.run_folder = None  # set by the config's make_callback: the file must resolve inside it

    def on_train_begin(self, logs=None):
        self.on_train_end()
        path = confine(self.run_folder, self.filename)
        resumed = not self._starting_fresh()
        append = self.append or resumed
        if resumed:
            self._drop_rows_from(int(self.params.get("initial_epoch", 0)))
        self._columns = self._header(path) if append else None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a" if append else "w", newline="", encoding="utf-8")

    def _header(self, path: Path) -> list[str] | None:
        """The columns of an existing file's header, or None when there is no file or it is empty."""
        if not path.exists():
            return None
        with open(path, newline="", encoding="utf-8") as file:
            return next(csv.reader(file, delimiter=self.separator), None) or None

    def _drop_rows_from(self, first_epoch: int) -> None:
        path = Path(self.filename)
        if not path.exists():
            return
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file, delimiter=self.separator))
        if not rows or rows[0][:1] != ["epoch"]:
            return
        kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < first_epoch]
        if len(kept) != len(rows):
            with open(path, "w", newline="", encoding="utf-8") as file:
                csv.writer(file, delimiter=self.separator).writerows(kept)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            header = self._columns is None
            columns = self._columns or ["epoch", *sorted(logs)]
            dropped = sorted(set(logs) - set(columns))
            if dropped:
                warnings.warn(f"{self.filename}: the existing header has no column for {', '.join(dropped)}; "
                              f"those values are not written", stacklevel=2)
            self._writer = csv.DictWriter(self._file, fieldnames=columns, delimiter=self.separator,
                                          extrasaction="ignore", restval="NA")
            if header:
                self._writer.writeheader()
        self._writer.writerow({**logs, "epoch": epoch})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None

    def set_state(self, state: dict, tensors: dict | None = None) -> None:
        self._resumed = True

    def get_config(self) -> dict:
        return {"filename": self.filename, "separator": self.separator, "append": self.append}


_WRITER_IDS = itertools.count()


class TensorBoard(Callback):
    """Writes each epoch's logs as TensorBoard scalars, laid out like Keras: `log_dir/train` (tags
    `epoch_loss`, `epoch_<metric>`, `epoch_learning_rate`) and `log_dir/validation` (the `val_` logs without
    the prefix), step = epoch index. Needs the optional `tensorboardX` package.

    A resumed run adds new event files to the same folders and hides the events of the epochs it redoes.

    Example:
        TensorBoard("tensorboard")   # then: tensorboard --logdir runs/<run>/tensorboard
    """

    def __init__(self, log_dir="tensorboard"):
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ArgumentError(f"`log_dir` must be a folder name, got {show(log_dir)}.")
        try:
            import tensorboardX
        except ImportError:
            raise NnctlError("the tensorboard callback needs the optional extra: "
                             "pip install 'nnctl[tensorboard]'") from None
        self._summary_writer = tensorboardX.SummaryWriter
        self.log_dir = str(log_dir)
        self._writers: dict = {}
        self._purge_step = None
        self.run_folder = None  # set by the config's make_callback: the folders must resolve inside it

    def _writer(self, split: str):
        if split not in self._writers:
            # tensorboardX names files by the second: without a unique suffix, a writer opened in the same
            # second (a resumed run, the next fold) would overwrite the previous file.
            folder = confine(self.run_folder, os.path.join(self.log_dir, split))
            self._writers[split] = self._summary_writer(str(folder),
                                                        purge_step=self._purge_step,
                                                        filename_suffix=f".{os.getpid()}.{next(_WRITER_IDS)}")
        return self._writers[split]

    def on_train_begin(self, logs=None):
        self.on_train_end()
        self._purge_step = None if self._starting_fresh() else int(self.params.get("initial_epoch", 0))
        self._writer("train")

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if key == "epoch_time" or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue
            split, name = ("validation", key[len("val_"):]) if key.startswith("val_") else ("train", key)
            name = "learning_rate" if name == "lr" else name
            self._writer(split).add_scalar(f"epoch_{name}", float(value), global_step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def set_state(self, state: dict, tensors: dict | None = None) -> None:
        self._resumed = True

    def get_config(self) -> dict:
        return {"log_dir": self.log_dir}


# `model_checkpoint` (nnctl/nn/checkpoint.py) is added to this table by the checkpoint module's owner.
