"""What watches a fit: the metric, LR schedule, early stopping, checkpoints.

Also the best checkpoint and TensorBoard logs.
"""

import importlib.util
import os
from typing import Any

from tffm.config import TrainConfig


def monitor_of(config: TrainConfig) -> str:
    """The validation metric early stopping and checkpoints watch."""
    if config.monitor:
        return config.monitor
    return "val_auc" if config.task == "binary" else "val_loss"


def mode_of(monitor: str) -> str:
    """`"max"` for metrics that grow when better (AUC), else `"min"`."""
    return "max" if monitor.endswith("auc") else "min"


def fit_callbacks(
    config: TrainConfig, monitor: str, *, checkpoint: str, logs: str
) -> list[Any]:
    """The callbacks of `tffm train`'s fit.

    Args:
        config: the `TrainConfig`.
        monitor: the metric to watch (`monitor_of(config)`).
        checkpoint: str. `.keras` path of the best model so far.
        logs: str. Folder whose `logs/` receives TensorBoard logs (when
            `tensorboard` is installed: the `[data]` extra).
    """
    import keras

    mode = mode_of(monitor)
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    callbacks = [
        # Adam's constant step leaves a noise floor; a smaller step once
        # the validation metric stalls gets closer to the optimum.
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.2, patience=0, min_lr=1e-5
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode=mode,
            patience=config.patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor=monitor, mode=mode, save_best_only=True
        ),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(logs, "logs"))
        )
    return callbacks
