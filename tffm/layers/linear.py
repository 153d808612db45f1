"""Linear (first-order) term of a factorization machine."""

from typing import Any

import keras
from keras import ops

from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class LinearTerm(keras.layers.Layer):
    """Global bias plus the sum of per-field linear contributions.

    Computes `w0 + sum_f w_f`, where `w_f` is already `w_i * x_i` for the
    field's active feature (see `FeatureEmbedding`).

    Args:
        use_bias: bool. Whether to add the global bias `w0`. Defaults to
            `True`.
        **kwargs: Base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: Tensor of shape `(batch_size, num_fields)`.

    Returns:
        Tensor of shape `(batch_size, 1)`.
    """

    def __init__(self, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_bias = use_bias

    def build(self, inputs_shape: tuple[int | None, ...]) -> None:
        if len(inputs_shape) != 2:
            raise ValueError(
                "`inputs` must have shape (batch_size, num_fields). "
                f"Received: inputs.shape={inputs_shape}"
            )
        self.bias = (
            self.add_weight(name="bias", shape=(1,), initializer="zeros")
            if self.use_bias
            else None
        )

    def call(self, inputs: Tensor) -> Tensor:
        out = ops.sum(inputs, axis=1, keepdims=True)  # (B, F) -> (B, 1)
        if self.bias is not None:
            out = out + self.bias
        return out

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return (inputs_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update({"use_bias": self.use_bias})
        return config
