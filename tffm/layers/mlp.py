"""The deep (DNN) part of DeepFM."""

from collections.abc import Sequence
from typing import Any

import keras

from tffm.checks import check_non_negative
from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class MLP(keras.layers.Layer):
    """Stack of Dense (+ BatchNorm) + activation + Dropout, then `Dense(1)`.

    Args:
        hidden_units: list of int. Width of each hidden layer; may be empty
            (then only the final `Dense(1)` remains).
        activation: str. Activation of the hidden layers. Defaults to
            `"relu"`.
        dropout: float in `[0, 1)`. Dropout rate after each hidden layer.
        batch_norm: bool. Batch normalization before each activation.
        kernel_l2: float. L2 penalty on every Dense kernel.
        **kwargs: Base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: Tensor of shape `(batch_size, input_dim)`.

    Returns:
        Tensor of shape `(batch_size, 1)`, the DNN logit.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        kernel_l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        hidden_units = list(hidden_units)
        if any(
            isinstance(u, bool) or not isinstance(u, int) or u <= 0
            for u in hidden_units
        ):
            raise ValueError(
                "`hidden_units` must be a list of positive integers. "
                f"Received: hidden_units={hidden_units!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout!r}"
            )
        check_non_negative("kernel_l2", kernel_l2)
        super().__init__(**kwargs)
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout = float(dropout)
        self.batch_norm = batch_norm
        self.kernel_l2 = float(kernel_l2)
        regularizer = keras.regularizers.L2(kernel_l2) if kernel_l2 else None
        self.blocks: list[keras.layers.Layer] = []
        for units in hidden_units:
            self.blocks.append(
                keras.layers.Dense(
                    units,
                    use_bias=not batch_norm,
                    kernel_regularizer=regularizer,
                    dtype=self.dtype_policy,
                )
            )
            if batch_norm:
                self.blocks.append(
                    keras.layers.BatchNormalization(dtype=self.dtype_policy)
                )
            self.blocks.append(
                keras.layers.Activation(activation, dtype=self.dtype_policy)
            )
            if dropout:
                self.blocks.append(
                    keras.layers.Dropout(dropout, dtype=self.dtype_policy)
                )
        self.output_dense = keras.layers.Dense(
            1, kernel_regularizer=regularizer, dtype=self.dtype_policy
        )

    def build(self, inputs_shape: tuple[int | None, ...]) -> None:
        shape = tuple(inputs_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.output_dense.build(shape)

    def call(self, inputs: Tensor, training: bool | None = None) -> Tensor:
        x = inputs  # (B, input_dim)
        for block in self.blocks:
            if isinstance(
                block,
                keras.layers.Dropout | keras.layers.BatchNormalization,
            ):
                x = block(x, training=training)
            else:
                x = block(x)
        return self.output_dense(x)  # (B, units[-1]) -> (B, 1)

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return (inputs_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            {
                "hidden_units": self.hidden_units,
                "activation": self.activation,
                "dropout": self.dropout,
                "batch_norm": self.batch_norm,
                "kernel_l2": self.kernel_l2,
            }
        )
        return config
