"""One fit: build the model where the plan says, fit it, resumably.

`fit_model` is the one path of every fit `tffm train` makes: the first fit,
chosen on the validation rows, and the refit on every training row.
"""

import contextlib
import os
import warnings
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tffm.features import Feature
from tffm.train.build import build_model
from tffm.train.callbacks import mode_of
from tffm.train.distribute import Plan
from tffm.train.options import FitOptions
from tffm.train.options import ModelOptions
from tffm.train.resume import ResumeCheckpoint


def fit_model(
    options: ModelOptions,
    features: list[Feature],
    plan: Plan,
    dataset: Any,
    *,
    checkpoint: ResumeCheckpoint,
    epochs: int,
    callbacks: Sequence[Any],
    validation: Any = None,
    verbose: int | str = "auto",
) -> tuple[Any, dict[str, list[float]]]:
    """Builds a fresh model in the plan's scope and fits it.

    Args:
        options: the `ModelOptions` to build and compile by.
        features: the feature spec.
        plan: where the fit runs (`tffm.train.distribute.Plan`).
        dataset: the training input (`plan.training_input`).
        checkpoint: the `ResumeCheckpoint` it resumes from and writes.
        epochs: int. Most epochs.
        callbacks: the fit's callbacks (the checkpoint goes after them).
        validation: encoded validation batches (or `DeviceRows`, beside
            training `DeviceRows`), or None.
        verbose: Keras' progress setting.

    Returns:
        `(model, history)`, the history whole across resumes.
    """
    with plan.scope(), quiet_fit():
        model = build_model(options, features)
        plan.prepare(model)
        history = plan.fit(
            model,
            dataset,
            checkpoint=checkpoint,
            epochs=epochs,
            callbacks=callbacks,
            validation_data=(
                None
                if validation is None
                else plan.validation_input(validation)
            ),
            verbose=verbose,
        )
    return model, history


def resume_checkpoint(
    directory: str, options: FitOptions, plan: Plan, order: Any
) -> ResumeCheckpoint:
    """The fit's `ResumeCheckpoint` in `directory` (emptied unless `resume`)."""
    checkpoint = ResumeCheckpoint(
        directory,
        every=options.checkpoint_every,
        order=order,
        rows_per_step=plan.rows_per_step,
    )
    if not options.resume:
        checkpoint.clear()
    return checkpoint


def best_epochs(history: Mapping[str, list[float]], monitor: str) -> int:
    """The number of epochs up to and including the best one on `monitor`."""
    scores = np.asarray(history[monitor])
    best = np.argmax(scores) if mode_of(monitor) == "max" else np.argmin(scores)
    return int(best) + 1


def replayed_rates(history: Mapping[str, list[float]]) -> Any:
    """A callback that gives each epoch the learning rate `history` had."""
    rates = [float(r) for r in history["learning_rate"]]
    return keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch])


@contextlib.contextmanager
def quiet_fit() -> Iterator[None]:
    """Silences Keras' warning for datasets of unknown length.

    A streamed, filtered `tf.data` input has no known number of batches, so
    Keras learns it when the first epoch ends and warns "Your input ran out
    of data" although nothing is wrong.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Your input ran out of data", category=UserWarning
        )
        yield


def checkpoint_path(output: str, *, refit: bool) -> str:
    """Where the chosen epoch's model is kept while training."""
    name = "selection.keras" if refit else "best.keras"
    return os.path.join(output, "checkpoints", name)
