"""Pieces shared by the FM and DeepFM functional models."""

from collections.abc import Sequence

import keras

from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical

TASKS = ("binary", "regression")


def feature_inputs(features: Sequence[Feature]) -> dict[str, keras.KerasTensor]:
    """Returns one `keras.Input` per feature, named by the feature.

    Encoded form: int32 ids `(batch_size,)` for `Categorical`, int32 ids
    `(batch_size, list_length)` for `MultiCategorical`, float32 values
    `(batch_size,)` for `Numeric`.
    """
    inputs = {}
    for feature in features:
        if isinstance(feature, MultiCategorical):
            shape: tuple[int | None, ...] = (None,)
        else:
            shape = ()
        dtype = "int32" if isinstance(feature, Categorical) else "float32"
        inputs[feature.name] = keras.Input(
            shape=shape, dtype=dtype, name=feature.name
        )
    return inputs


def validate_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(
            f"`task` must be one of {TASKS}. Received: task={task!r}"
        )


def output_head(
    logit_parts: list[keras.KerasTensor], task: str
) -> keras.KerasTensor:
    """Sums the logit parts into `logit` and applies the task's link."""
    if len(logit_parts) == 1:
        logit = keras.layers.Identity(name="logit")(logit_parts[0])
    else:
        logit = keras.layers.Add(name="logit")(logit_parts)  # (B, 1)
    if task == "binary":
        return keras.layers.Activation("sigmoid", name="probability")(logit)
    return keras.layers.Identity(name="prediction")(logit)
