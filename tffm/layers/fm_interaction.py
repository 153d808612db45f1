"""Factorization-machine interaction layer (orders 2 to 4)."""

import keras
from keras import ops

from tffm.types import Tensor

_SUPPORTED_ORDERS = (2, 3, 4)


@keras.saving.register_keras_serializable(package="tffm")
class FMInteraction(keras.layers.Layer):
    """Factorization-machine interaction of field embeddings, order 2 to 4.

    For `order=2` this is Rendle's pairwise term
    `sum_{i<j} <v_i, v_j>`, computed with the identity
    `0.5 * sum_d((sum_f v_fd)^2 - sum_f v_fd^2)` in O(F * D) instead of
    O(F^2 * D). For `order=3` and `order=4` it is the ANOVA kernel of
    Blondel et al. (2016), `sum_{i<j<l} sum_d v_id v_jd v_ld` (and the
    quadruple sum), computed from the power sums `p_k = sum_f v_fd^k` with the
    Newton-Girard identities in O(order * F * D); combinations are never
    enumerated.

    Real-valued features enter by scaling: pass `v_i * x_i` to get the FM term
    `sum_{i<j} <v_i, v_j> x_i x_j` of a design-matrix row `x`.

    Args:
        order: int. Interaction order, one of 2, 3, 4. Defaults to 2.
        reduce_sum: bool. If `True` (default), sum over `embedding_dim` and
            return `(batch_size, 1)`; else return `(batch_size,
            embedding_dim)`, the per-factor terms (as NFM's Bi-Interaction).
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: Tensor of shape `(batch_size, num_fields, embedding_dim)`.
        mask: Optional tensor of shape `(batch_size, num_fields)`, 1/True for
            fields to keep, 0/False for fields to drop from every sum.

    Returns:
        `(batch_size, 1)` if `reduce_sum`, else `(batch_size, embedding_dim)`.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((2, 3, 4), dtype="float32")
    >>> tuple(FMInteraction()(x).shape)
    (2, 1)

    References:
        - [Rendle, 2010](https://doi.org/10.1109/ICDM.2010.127)
        - [Blondel et al., 2016](https://arxiv.org/abs/1607.07195)
    """

    def __init__(
        self, order: int = 2, reduce_sum: bool = True, **kwargs: object
    ) -> None:
        if isinstance(order, bool) or order not in _SUPPORTED_ORDERS:
            raise ValueError(
                f"`order` must be one of {_SUPPORTED_ORDERS}. "
                f"Received: order={order!r}"
            )
        if not isinstance(reduce_sum, bool):
            raise ValueError(
                "`reduce_sum` must be a bool. "
                f"Received: reduce_sum={reduce_sum!r}"
            )
        super().__init__(**kwargs)
        self.order = order
        self.reduce_sum = reduce_sum
        # The mask is consumed (it drops fields); the output carries none.
        self.supports_masking = True

    def build(self, inputs_shape: tuple[int | None, ...]) -> None:
        if len(inputs_shape) != 3:
            raise ValueError(
                "`inputs` must have shape (batch_size, num_fields, "
                f"embedding_dim). Received: inputs.shape={inputs_shape}"
            )

    def call(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        v = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if mask is not None:
            _check_mask_shape(tuple(mask.shape), tuple(v.shape))
            # A dropped field is a zero vector: it adds nothing to any power
            # sum, hence nothing to any elementary symmetric polynomial.
            keep = ops.cast(mask, v.dtype)  # (B, F)
            v = v * ops.expand_dims(keep, -1)  # (B, F, D)
        terms = _elementary_symmetric(v, self.order)  # (B, D)
        if self.reduce_sum:
            return ops.sum(terms, axis=-1, keepdims=True)  # (B, D) -> (B, 1)
        return terms

    def compute_mask(self, inputs: Tensor, mask: Tensor | None = None) -> None:
        return None

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        if self.reduce_sum:
            return (inputs_shape[0], 1)
        return (inputs_shape[0], inputs_shape[2])

    def get_config(self) -> dict[str, object]:
        config = super().get_config()
        config.update({"order": self.order, "reduce_sum": self.reduce_sum})
        return config


def _elementary_symmetric(v: Tensor, order: int) -> Tensor:
    """Returns `e_order` over fields, per embedding dimension.

    Newton-Girard: `k * e_k = sum_{i=1..k} (-1)^(i-1) e_{k-i} p_i` with
    `p_i = sum_f v_f^i` and `e_0 = 1`.
    """
    powers = [ops.sum(v, axis=1)]  # p_1: (B, F, D) -> (B, D)
    v_power = v
    for _ in range(1, order):
        v_power = v_power * v  # (B, F, D)
        powers.append(ops.sum(v_power, axis=1))  # (B, F, D) -> (B, D)
    e = [ops.ones_like(powers[0])]  # e_0: (B, D)
    for k in range(1, order + 1):
        acc = e[k - 1] * powers[0]
        for i in range(2, k + 1):
            term = e[k - i] * powers[i - 1]
            acc = acc - term if i % 2 == 0 else acc + term
        e.append(acc / float(k))
    return e[order]  # (B, D)


def _check_mask_shape(
    mask_shape: tuple[int | None, ...], inputs_shape: tuple[int | None, ...]
) -> None:
    # Static shapes only: `call` never branches on tensor values.
    if len(mask_shape) != 2 or not all(
        _dims_compatible(m, i)
        for m, i in zip(mask_shape, inputs_shape[:2], strict=True)
    ):
        raise ValueError(
            "`mask` must have shape (batch_size, num_fields) matching "
            f"`inputs`. Received: mask.shape={mask_shape}, "
            f"inputs.shape={inputs_shape}"
        )


def _dims_compatible(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b
