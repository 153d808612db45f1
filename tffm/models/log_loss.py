"""The logloss metric models are compiled with (no penalty terms)."""

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tffm")
class LogLoss(keras.metrics.MeanMetricWrapper):  # type: ignore[misc]
    """Mean binary cross-entropy of the predictions, without any penalty.

    `val_loss` adds the L2 penalties to the data term; this is the data
    term alone. Labels may be `(batch_size,)` or `(batch_size, 1)`.
    """

    def __init__(self, name: str = "logloss", dtype: Any = None) -> None:
        super().__init__(fn=_log_loss, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


def _log_loss(y_true: Any, y_pred: Any) -> Any:
    y_true = keras.ops.reshape(
        keras.ops.cast(y_true, y_pred.dtype), keras.ops.shape(y_pred)
    )
    return keras.losses.binary_crossentropy(y_true, y_pred)
