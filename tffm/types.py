"""Type aliases shared across tffm."""

from typing import Any

# A backend tensor (tf.Tensor, jax.Array, torch.Tensor) or anything
# `keras.ops.convert_to_tensor` accepts. Kept as `Any`: the backends share no
# common base class.
Tensor = Any
