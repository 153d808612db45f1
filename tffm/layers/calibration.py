"""Platt scaling of a binary model's logit, fitted after training."""

from typing import Any

import keras

from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class LogitCalibration(keras.layers.Layer):
    """`scale * logit + shift`: Platt scaling, inside the model.

    The two weights are not trained with the model: it is the identity
    until `tffm.train.calibration.fit_platt` fits them on held-out rows after
    training (`tffm train` does, for binary tasks). A positive `scale`
    keeps the order of the scores, so AUC is unchanged while the
    probabilities `sigmoid(scale * logit + shift)` become calibrated. Being
    a layer of the model, it travels into the SavedModel and ONNX exports.

    Args:
        **kwargs: Base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: Tensor of shape `(batch_size, 1)`, the raw logit.

    Returns:
        Tensor of shape `(batch_size, 1)`.

    References:
        - [Platt, 1999](https://www.researchgate.net/publication/2594015)
    """

    def build(self, inputs_shape: tuple[int | None, ...]) -> None:
        self.scale = self.add_weight(
            name="scale", shape=(), initializer="ones", trainable=False
        )
        self.shift = self.add_weight(
            name="shift", shape=(), initializer="zeros", trainable=False
        )

    def call(self, inputs: Tensor) -> Tensor:
        return inputs * self.scale + self.shift  # (B, 1)

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return tuple(inputs_shape)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        return config
