"""What watches a fit: the metric, LR schedule, early stopping, checkpoints.

A factorization model starts slowly: for several epochs its factors grow
from small random values while the validation metric sits at logistic
regression's level. A schedule that cuts the learning rate at the first flat
epoch freezes it there, so here nothing (neither the learning-rate decay nor
early stopping) acts before `warmup_epochs`, and the plateau decay waits
`decay_patience` flat epochs.
"""

import importlib.util
import math
import os
from typing import Any

import keras

from tffm.models.log_loss import LogLoss
from tffm.train.options import FitOptions

# Monitors computed here from Keras' own validation metrics.
AUC_LOGLOSS = "val_auc_logloss"  # val_auc - val_logloss (FuxiCTR's monitor)


def mode_of(monitor: str) -> str:
    """`"max"` for metrics that grow when better (AUC), else `"min"`."""
    return "max" if monitor.endswith(("auc", "auc_logloss")) else "min"


def compile_metrics(task: str) -> list[Any]:
    """The metrics a model is compiled with: what the monitors read."""
    if task == "binary":
        return [keras.metrics.AUC(name="auc"), LogLoss()]
    return [keras.metrics.RootMeanSquaredError(name="rmse")]


def fit_callbacks(
    options: FitOptions, *, checkpoint: str, logs: str
) -> list[Any]:
    """The callbacks of `tffm train`'s fit, in the order they must run.

    Args:
        options: the `FitOptions` (the monitor, schedule, patience, `ema`).
        checkpoint: str. `.keras` path of the best model so far.
        logs: str. Folder whose `logs/` receives TensorBoard logs (when
            `tensorboard` is installed: the `[data]` extra).
    """
    monitor = options.monitor
    mode = mode_of(monitor)
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    callbacks: list[Any] = [DerivedMetrics()]  # first: others read its keys
    average = AveragedWeights() if options.ema else None
    if average is not None:  # validated, then read by those below
        callbacks.append(average)
    schedule = learning_rate_schedule(options)
    if schedule is not None:
        callbacks.append(schedule)
    callbacks += [
        EarlyStopping(
            monitor=monitor,
            mode=mode,
            patience=options.patience,
            warmup_epochs=options.warmup_epochs,
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor=monitor, mode=mode, save_best_only=True
        ),
    ]
    if average is not None:  # training goes on from the raw weights
        callbacks.append(average.swap_back)
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(logs, "logs"))
        )
    return callbacks


def learning_rate_schedule(options: FitOptions) -> Any:
    """The `options.schedule` callback, or None for a constant rate."""
    if options.schedule == "plateau":
        return PlateauDecay(
            options.monitor,
            factor=options.decay_factor,
            patience=options.decay_patience,
            start_from_epoch=options.warmup_epochs,
        )
    if options.schedule == "cosine":
        return CosineDecay(options.learning_rate, options.epochs)
    return None


class DerivedMetrics(keras.callbacks.Callback):
    """Adds the derived monitors and the learning rate to the epoch logs.

    `val_auc_logloss = val_auc - val_logloss`, and the epoch's
    `learning_rate` (what a refit replays).
    """

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if logs is None:
            return
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        if "val_auc" in logs and "val_logloss" in logs:
            logs[AUC_LOGLOSS] = float(logs["val_auc"]) - float(
                logs["val_logloss"]
            )


class EarlyStopping(keras.callbacks.EarlyStopping):  # type: ignore[misc]
    """Early stopping that never stops during warm-up, yet keeps any epoch.

    Keras' `start_from_epoch` both forbids stopping before it and ignores
    the epochs before it when keeping the best weights, so a model whose
    best validation came early (an FM on a few thousand rows, before its
    factors overfit: Criteo's sample) was kept at a later, worse epoch,
    while the checkpoint (`ModelCheckpoint`, watching every epoch) held the
    better one. Here every epoch may be the best, restored at the end;
    only the patience waits for `warmup_epochs`.

    Args:
        monitor: str. The metric in the epoch logs.
        mode: str. `"max"` or `"min"`.
        patience: int. Epochs without improvement, after warm-up, before
            stopping.
        warmup_epochs: int. Epochs during which training never stops.
    """

    def __init__(
        self, *, monitor: str, mode: str, patience: int, warmup_epochs: int
    ) -> None:
        super().__init__(
            monitor=monitor,
            mode=mode,
            patience=patience,
            restore_best_weights=True,
        )
        self.warmup_epochs = warmup_epochs
        self.stopped_epoch: int = 0  # Keras' own, typed

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        super().on_epoch_end(epoch, logs)
        if epoch < self.warmup_epochs:
            self.wait = 0  # the patience counts from the warm-up's end
            if self.stopped_epoch == epoch and self.model.stop_training:
                self.model.stop_training = False
                self.stopped_epoch = 0


class AveragedWeights(keras.callbacks.SwapEMAWeights):  # type: ignore[misc]
    """The weights' moving average where the fit is judged (`config.ema`).

    With an optimizer of `use_ema=True`, Keras keeps an exponential moving
    average of the weights (Polyak averaging) beside the raw weights that
    take the steps. This puts the average in the model while it is
    validated, and at each epoch's end for the callbacks listed between
    this one and `swap_back` (early stopping keeps the best epoch's
    average, the checkpoint saves it); `swap_back` then returns the raw
    weights to the model, so training and a resume checkpoint (listed
    after it) go on from them. When `fit` ends, Keras writes the average
    into the model (`finalize_variable_values`).

    Keras' own `SwapEMAWeights(swap_on_epoch=True)` leaves the average in
    the model after the epoch's end instead, so a fit that early stopping
    ends before its last epoch has the raw weights written over the model
    by that final step, and a resume checkpoint taken at an epoch's end
    would hold the two swapped.
    """

    def __init__(self) -> None:
        super().__init__(swap_on_epoch=False)
        self._ema_weights_in_model: bool = False  # Keras' own flag, typed
        self.swap_back = _SwapBack(self)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self.put_average(True)

    def put_average(self, in_model: bool) -> None:
        """Swaps so that the model holds the average (True) or not."""
        if self._ema_weights_in_model != in_model:
            self._swap_variables()
            self._ema_weights_in_model = in_model

    # `fit` calls no predict hooks; Keras' `on_predict_end` would leave the
    # average in the model.
    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        pass


class _SwapBack(keras.callbacks.Callback):
    """Returns the raw weights to the model at an epoch's end."""

    def __init__(self, average: AveragedWeights) -> None:
        super().__init__()
        self.average = average

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self.average.put_average(False)


class PlateauDecay(keras.callbacks.Callback):
    """Multiplies the learning rate by `factor` after `patience` flat epochs.

    Like `keras.callbacks.ReduceLROnPlateau`, but it neither decays nor
    counts flat epochs before `start_from_epoch` (a factorization model's
    slow start), and after a decay it waits `patience` epochs again.

    Args:
        monitor: str. The metric in the epoch logs.
        factor: float. Multiplier of the rate at each decay, in (0, 1).
        patience: int. Flat epochs before a decay.
        start_from_epoch: int. Epochs before any decay.
        min_learning_rate: float. The rate never goes below this.
    """

    def __init__(
        self,
        monitor: str,
        *,
        factor: float,
        patience: int,
        start_from_epoch: int = 0,
        min_learning_rate: float = 1e-6,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.start_from_epoch = start_from_epoch
        self.min_learning_rate = min_learning_rate
        self.sign = 1.0 if mode_of(monitor) == "max" else -1.0
        self.best = -math.inf
        self.wait = 0

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        score = self.sign * float(value)
        if score > self.best:
            self.best, self.wait = score, 0
            return
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self.wait >= self.patience:
            rate = float(self.model.optimizer.learning_rate)
            new = max(rate * self.factor, self.min_learning_rate)
            self.model.optimizer.learning_rate = new
            self.wait = 0


class CosineDecay(keras.callbacks.Callback):
    """Cosine decay of the learning rate over the epoch budget, per epoch.

    Args:
        learning_rate: float. The starting rate.
        epochs: int. The epoch budget the rate decays over (to 1% of it).
    """

    def __init__(self, learning_rate: float, epochs: int) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.epochs = epochs

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        progress = min(epoch / max(self.epochs - 1, 1), 1.0)
        scale = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        self.model.optimizer.learning_rate = self.learning_rate * scale
