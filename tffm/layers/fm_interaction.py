"""Factorization-machine interaction layer (orders 2 to 4)."""

from collections.abc import Sequence
from typing import Literal

import keras
from keras import ops

from tffm.types import Tensor

_SUPPORTED_ORDERS = (2, 3, 4)


@keras.saving.register_keras_serializable(package="tffm")
class FMInteraction(keras.layers.Layer):
    """Factorization-machine interaction of field embeddings, order 2 to 4.

    For `order=2` this is Rendle's pairwise term `sum_{i<j} <v_i, v_j>`,
    computed with the identity `0.5 * sum_d((sum_f v_fd)^2 - sum_f v_fd^2)`
    in O(F * D) instead of O(F^2 * D). For `order=3` and `order=4` it is the
    ANOVA kernel of Blondel et al. (2016), `sum_{i<j<l} sum_d v_id v_jd
    v_ld` (and the quadruple sum), by their dynamic program with prefix sums
    over fields, O(order * F * D); combinations are never enumerated.

    The identity subtracts two squares: when one field's vector is much
    larger than the others' (a numeric feature with a large value), float32
    loses the result in that subtraction. Fields listed in `exact_fields`
    (tffm's models list their numeric fields) are kept out of it: with `B`
    the other fields and `E` those, the term is `pairs(B) + <sum_B v,
    sum_E v> + pairs(E)`, the first by the identity (its fields are
    bounded), the cross term a product of sums (no cancellation), and
    `pairs(E)` by the prefix-sum program (see `_elementary_symmetric`).

    Real-valued features enter by scaling: pass `v_i * x_i` to get the FM term
    `sum_{i<j} <v_i, v_j> x_i x_j` of a design-matrix row `x`.

    Args:
        order: int. Interaction order, one of 2, 3, 4. Defaults to 2.
        reduce_sum: bool. If `True` (default), sum over `embedding_dim` and
            return `(batch_size, 1)`; else return `(batch_size,
            embedding_dim)`, the per-factor terms (as NFM's Bi-Interaction).
        exact_fields: list of int, or `"all"`. Fields whose vectors may
            dominate the others' (order 2; higher orders always run the
            exact program). `"all"` runs the prefix-sum program over every
            field (for inputs whose field count is not fixed, such as a
            sparse design-matrix row). Defaults to none.
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
        self,
        order: int = 2,
        reduce_sum: bool = True,
        exact_fields: Sequence[int] | Literal["all"] = (),
        **kwargs: object,
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
        if exact_fields != "all":
            exact_fields = list(exact_fields)
            if any(
                isinstance(i, bool) or not isinstance(i, int) or i < 0
                for i in exact_fields
            ) or len(set(exact_fields)) != len(exact_fields):
                raise ValueError(
                    "`exact_fields` must be distinct non-negative field "
                    f"indices or 'all'. Received: exact_fields={exact_fields!r}"
                )
            exact_fields = sorted(exact_fields)
        super().__init__(**kwargs)
        self.order = order
        self.reduce_sum = reduce_sum
        self.exact_fields = exact_fields
        # The mask is consumed (it drops fields); the output carries none.
        self.supports_masking = True

    def build(self, inputs_shape: tuple[int | None, ...]) -> None:
        if len(inputs_shape) != 3:
            raise ValueError(
                "`inputs` must have shape (batch_size, num_fields, "
                f"embedding_dim). Received: inputs.shape={inputs_shape}"
            )
        num_fields = inputs_shape[1]
        exact = [] if self.exact_fields == "all" else self.exact_fields
        if exact and (num_fields is None or exact[-1] >= num_fields):
            raise ValueError(
                f"`exact_fields` must index the {num_fields} fields. "
                f"Received: exact_fields={self.exact_fields}"
            )

    def call(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        v = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if mask is not None:
            _check_mask_shape(tuple(mask.shape), tuple(v.shape))
            # A dropped field is a zero vector: it adds nothing to any power
            # sum, hence nothing to any elementary symmetric polynomial.
            keep = ops.cast(mask, v.dtype)  # (B, F)
            v = v * ops.expand_dims(keep, -1)  # (B, F, D)
        if self.order == 2 and self.exact_fields != "all":
            terms = _pairwise(v, self.exact_fields)  # (B, D)
        else:
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
        config: dict[str, object] = super().get_config()
        config.update(
            {
                "order": self.order,
                "reduce_sum": self.reduce_sum,
                "exact_fields": self.exact_fields,
            }
        )
        return config


def _pairwise(v: Tensor, exact_fields: Sequence[int]) -> Tensor:
    """`sum_{i<j} v_i * v_j` over fields, per embedding dimension: `(B, D)`.

    The identity over the bounded fields; see `FMInteraction` for the
    `exact_fields`.
    """
    num_fields = v.shape[1]
    if not exact_fields:
        total = ops.sum(v, axis=1)  # (B, F, D) -> (B, D)
        return 0.5 * (ops.square(total) - ops.sum(ops.square(v), axis=1))
    exact = ops.take(v, list(exact_fields), axis=1)  # (B, E, D)
    pairs = _elementary_symmetric(exact, 2)  # (B, D)
    bounded_fields = [f for f in range(num_fields) if f not in exact_fields]
    if not bounded_fields:
        return pairs
    # Masks, not slices: a slice's gradient costs a copy of `v`.
    keep = ops.convert_to_tensor(
        [[0.0 if f in exact_fields else 1.0] for f in range(num_fields)],
        v.dtype,
    )  # (F, 1)
    bounded = ops.sum(v * keep, axis=1)  # (B, D)
    squares = ops.sum(ops.square(v) * keep, axis=1)  # (B, D)
    identity = 0.5 * (ops.square(bounded) - squares)  # (B, D)
    return identity + bounded * ops.sum(exact, axis=1) + pairs


def _elementary_symmetric(v: Tensor, order: int) -> Tensor:
    """Returns `e_order` over fields, per embedding dimension.

    Blondel et al.'s ANOVA dynamic program, vectorized over fields with
    exclusive prefix sums: `t_1 = v`, `t_k[f] = v[f] * sum_{g<f} t_{k-1}[g]`,
    `e_k = sum_f t_k[f]`. For `order=2` this is
    `sum_f v_f * sum_{g<f} v_g`, the same value as the square-of-sum identity
    `0.5 * ((sum_f v_f)^2 - sum_f v_f^2)` at the same O(F * D) cost, but
    without its cancellation: when one field dominates (a large numeric
    value), the identity subtracts two huge squares and loses the result in
    float32, while every product here is of the size of the result.
    """
    term = v  # t_1: (B, F, D)
    for _ in range(1, order):
        prefix = _cumsum_fields(term[:, :-1])  # (B, F-1, D)
        prefix = ops.pad(prefix, [(0, 0), (1, 0), (0, 0)])  # (B, F, D)
        term = v * prefix  # t_k: (B, F, D)
    return ops.sum(term, axis=1)  # (B, F, D) -> (B, D)


def _cumsum_fields(x: Tensor) -> Tensor:
    """Inclusive cumulative sum over axis 1, in `x`'s own dtype."""
    if keras.backend.backend() == "torch":
        # Keras 3.15's torch `cumsum` computes float64 input in float32
        # (its `result_type("float64")` gives float32); torch's does not.
        import torch  # deferred: torch

        return torch.cumsum(x, dim=1)
    return ops.cumsum(x, axis=1)


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
