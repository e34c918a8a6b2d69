"""Training callbacks: the hook contract (`base`), the Keras callbacks that act on training (`monitors`)
and record it (`loggers`), Checkpointer and ModelCheckpoint (`checkpoint`), and the `CALLBACKS` table."""

from nnctl.nn.callbacks.base import Callback, CallbackList, History, higher_is_better
from nnctl.nn.callbacks.loggers import CSVLogger, TensorBoard
from nnctl.nn.callbacks.monitors import EarlyStopping, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN
from nnctl.nn.callbacks.checkpoint import Checkpointer, ModelCheckpoint
from nnctl.registry import Registry

CALLBACKS = Registry(
    "callback",
    entries={"early_stopping": EarlyStopping, "reduce_lr_on_plateau": ReduceLROnPlateau,
             "learning_rate_scheduler": LearningRateScheduler, "terminate_on_nan": TerminateOnNaN,
             "csv_logger": CSVLogger, "tensorboard": TensorBoard,
             "model_checkpoint": ModelCheckpoint},
    aliases={"early_stop": "early_stopping", "reduce_lr": "reduce_lr_on_plateau",
             "lr_scheduler": "learning_rate_scheduler", "lr_schedule": "learning_rate_scheduler",
             "csv": "csv_logger", "tensor_board": "tensorboard", "checkpoint": "model_checkpoint"},
    base=Callback,
)

__all__ = ["CALLBACKS", "Callback", "CallbackList", "History", "higher_is_better", "EarlyStopping",
           "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN", "CSVLogger", "TensorBoard",
           "Checkpointer", "ModelCheckpoint"]
