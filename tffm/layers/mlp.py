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
                self.blocks.append(Dropout(dropout, dtype=self.dtype_policy))
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


class Dropout(keras.layers.Dropout):  # type: ignore[misc]
    """`keras.layers.Dropout` whose mask compiles to fast code under XLA.

    On TensorFlow, Keras draws the mask with `stateless_dropout`'s default
    generator (`auto_select`), which XLA compiles on CPU into a slow one:
    114 ms for a `(2048, 128)` mask, against 2.3 ms with `philox`
    (measured; a DeepFM step with dropout took 515 ms instead of 24).
    Same rate, same seed generator; only the random bits differ. Other
    backends use Keras' own dropout.
    """

    def call(self, inputs: Tensor, training: bool = False) -> Tensor:
        if not training or self.rate <= 0:
            return inputs
        if keras.backend.backend() != "tensorflow":
            return super().call(inputs, training=training)
        import tensorflow as tf  # deferred: TensorFlow

        seed = self.seed_generator.next()  # (2,) int64 state
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        return tf.nn.experimental.stateless_dropout(
            inputs,
            rate=self.rate,
            seed=seed,
            noise_shape=self.noise_shape,
            rng_alg="philox",
        )
