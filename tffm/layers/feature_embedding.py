"""One fused embedding table read by every field of a feature spec."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tffm.checks import check_int
from tffm.checks import check_non_negative
from tffm.features import MISSING_ID
from tffm.features import NUMERIC_BOUND
from tffm.features import OOV_ID
from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import normalize_features
from tffm.features import serialize_feature
from tffm.features import table_layout
from tffm.initializers import TableNormal
from tffm.rows import gather_rows
from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class FeatureEmbedding(keras.layers.Layer):
    """Field embeddings and linear weights from one fused table.

    Every field is logically its own table but all live, at fixed offsets, in
    one table: the variable `embeddings` of shape `(num_rows,
    embedding_dim)` holds the FM/DNN vectors `v`, and `linear_weights`,
    `(num_rows,)`, the linear weights `w` of the same rows. One gather per
    variable serves all single-valued fields; features that name the same
    `table` share rows. (Two variables rather than one `(num_rows,
    embedding_dim + 1)` array: slicing `v` and `w` out of one gathered
    array costs a gradient copy of the batch's rows every step.)

    Per field:
    - `Categorical`: `v = V[id]`, `w = W[id]`;
    - `MultiCategorical`: sum (the default `combiner`) or mean of `V[id]`
      over non-padding ids (an empty list gives zeros);
    - `Numeric`: `v = x' * V[field]`, `w = x' * W[field]`, with
      `x' = (transform(x) - mean) / std` clipped to `+-NUMERIC_BOUND` and
      `x' = 0` for NaN.

    Ids outside a field's range are read as that field's out-of-vocabulary id
    (missing id for hashed fields), never as another field's rows. The range
    check, the offsets and the numeric transforms are vectorized over fields
    (a few ops per batch, not a few per field).

    Args:
        features: list of tffm features (or their dicts).
        embedding_dim: int. Size of each field vector (`>= 0`; 0 leaves only
            the linear weights, i.e. logistic regression).
        embeddings_initializer: Initializer of both variables. Defaults to
            `tffm.initializers.TableNormal(stddev=0.01)` (normal values, drawn
            without extra copies of a large table).
        embeddings_l2: float. L2 penalty on the rows a batch reads (their
            squared norms summed over fields, averaged over the batch): the
            untouched rows get no gradient, unlike a full-table
            regularizer. A numeric field's row is read by each example
            with a value there (not NaN). Defaults to 0.
        linear_l2: float or None. The same penalty on the linear weights
            `w` of those rows; None (the default) uses `embeddings_l2`.
            A linear weight is a value's bias, one number that many rows
            determine, and shrinking it with the vectors can cost more
            than it saves (MovieLens: RMSE 0.9186 -> 0.9162 with 0 here).
        table_l2: float. L2 penalty on the whole table, every step
            (`table_l2 * (sum(V ** 2) + sum(W ** 2))`): rare values are held
            back as much as frequent ones, which small data sets need;
            costs a dense update of the table. Defaults to 0.
        **kwargs: Base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: dict `{feature_name: tensor}`; ids `(batch_size,)` int for
            `Categorical`, `(batch_size, list_length)` int for
            `MultiCategorical`, `(batch_size,)` float for `Numeric`.

    Returns:
        Tuple `(embeddings, linear)`: `(batch_size, num_fields,
        embedding_dim)` and `(batch_size, num_fields)`, fields in `features`
        order.
    """

    def __init__(
        self,
        features: Sequence[Feature | Mapping[str, Any]],
        embedding_dim: int,
        embeddings_initializer: Any = None,
        embeddings_l2: float = 0.0,
        table_l2: float = 0.0,
        linear_l2: float | None = None,
        **kwargs: Any,
    ) -> None:
        features = normalize_features(features)
        check_int("embedding_dim", embedding_dim, 0)
        check_non_negative("embeddings_l2", embeddings_l2)
        if linear_l2 is not None:
            check_non_negative("linear_l2", linear_l2)
        check_non_negative("table_l2", table_l2)
        super().__init__(**kwargs)
        self.features = features
        self.embedding_dim = embedding_dim
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or TableNormal(stddev=0.01)
        )
        self.embeddings_l2 = float(embeddings_l2)
        self.table_l2 = float(table_l2)
        self.linear_l2 = None if linear_l2 is None else float(linear_l2)
        layout = table_layout(features)
        self.num_rows = sum(rows for _, rows in layout.values())
        offsets = {f.name: layout[f.table_name][0] for f in features}
        self._single = [f for f in features if isinstance(f, Categorical)]
        self._multi = [f for f in features if isinstance(f, MultiCategorical)]
        self._numeric = [f for f in features if isinstance(f, Numeric)]
        # Per single-valued field: first row, rows, the row out-of-range ids
        # read (OOV; "missing" for hashed fields).
        self._plan = {
            f.name: (
                offsets[f.name],
                f.num_ids,
                MISSING_ID if f.hash_bins is not None else OOV_ID,
            )
            for f in self._single + self._multi
        }
        self._numeric_rows = [offsets[f.name] for f in self._numeric]
        # Fields are emitted grouped by kind; this restores `features` order.
        grouped = [f.name for f in self._single + self._multi + self._numeric]
        self._order = [grouped.index(f.name) for f in features]

    def build(self, inputs_shape: Mapping[str, Any]) -> None:
        missing = [f.name for f in self.features if f.name not in inputs_shape]
        if missing:
            raise ValueError(
                f"Missing inputs for features {missing}. "
                f"Received inputs: {sorted(inputs_shape)}"
            )
        regularizer = (
            keras.regularizers.L2(self.table_l2) if self.table_l2 else None
        )
        self.embeddings = (
            self.add_weight(
                name="embeddings",
                shape=(self.num_rows, self.embedding_dim),
                initializer=self.embeddings_initializer,
                regularizer=regularizer,
            )
            if self.embedding_dim
            else None
        )
        self.linear_weights = self.add_weight(
            name="linear_weights",
            shape=(self.num_rows,),
            initializer=self.embeddings_initializer,
            regularizer=regularizer,
        )

    def call(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        vectors, linear = [], []  # per kind: (B, F_kind, D), (B, F_kind)
        penalty: Tensor | None = None  # (B,): the rows read, weighted
        penalize = bool(self.embeddings_l2 or self._linear_l2)
        if self._single:
            ids = ops.stack(
                [ops.cast(inputs[f.name], "int32") for f in self._single],
                axis=1,
            )  # (B, Fc)
            rows = self._rows(ids, [f.name for f in self._single])  # (B, Fc)
            v, w = self._read(rows)  # (B, Fc, D), (B, Fc)
            vectors.append(v)
            linear.append(w)
            if penalize:
                penalty = self._penalty(v, w)
        for feature in self._multi:
            v, w, pooled_penalty = self._pool(
                feature, inputs[feature.name], penalize
            )
            vectors.append(ops.expand_dims(v, 1))  # (B, 1, D)
            linear.append(ops.expand_dims(w, 1))  # (B, 1)
            if pooled_penalty is not None:
                penalty = _add(penalty, pooled_penalty)
        if self._numeric:
            x, present = self._numeric_values(inputs)  # (B, Fn) each
            v, w = self._read(ops.convert_to_tensor(self._numeric_rows))
            vectors.append(x[:, :, None] * v[None])  # (B, Fn, D)
            linear.append(x * w[None])  # (B, Fn)
            if penalize:
                # A numeric field's row is read by each example that has a
                # value there (libFM regularizes where x != 0; NaN is x' = 0).
                per_row = self._penalty(v[:, None], w[:, None])  # (Fn,)
                penalty = _add(penalty, ops.sum(present * per_row[None], 1))
        embeddings = _concat(vectors, axis=1)  # (B, F, D), grouped by kind
        linear_out = _concat(linear, axis=1)  # (B, F)
        if self._order != sorted(self._order):
            embeddings = ops.take(embeddings, self._order, axis=1)
            linear_out = ops.take(linear_out, self._order, axis=1)
        if penalty is not None:
            # In float32 whatever the compute dtype: Keras sums the model's
            # losses with the float32 data loss (TensorFlow refuses bf16).
            self.add_loss(ops.cast(ops.mean(penalty), "float32"))
        return embeddings, linear_out

    @property
    def _linear_l2(self) -> float:
        """The penalty's weight on `w`: `linear_l2`, else `embeddings_l2`."""
        return self.embeddings_l2 if self.linear_l2 is None else self.linear_l2

    def _penalty(self, v: Tensor, w: Tensor) -> Tensor:
        """`embeddings_l2 * |v|^2 + linear_l2 * w^2`, summed over axis 1.

        `v` is `(N, R, D)` and `w` `(N, R)`: R rows read by each of N
        examples; returns `(N,)`. A term whose weight is 0 is not computed.
        """
        terms = []
        if self.embeddings_l2:
            terms.append(
                self.embeddings_l2 * ops.sum(ops.square(v), axis=(1, 2))
            )
        if self._linear_l2:
            terms.append(self._linear_l2 * ops.sum(ops.square(w), axis=1))
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def compute_output_shape(
        self, inputs_shape: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        batch = inputs_shape[self.features[0].name][0]
        num_fields = len(self.features)
        return (batch, num_fields, self.embedding_dim), (batch, num_fields)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            {
                "features": [serialize_feature(f) for f in self.features],
                "embedding_dim": self.embedding_dim,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "embeddings_l2": self.embeddings_l2,
                "table_l2": self.table_l2,
                "linear_l2": self.linear_l2,
            }
        )
        return config

    def _rows(self, ids: Tensor, names: Sequence[str]) -> Tensor:
        """Ids of fields `names` (last axis) -> rows of the fused table."""
        first, size, fallback = (
            ops.convert_to_tensor([self._plan[n][k] for n in names], "int32")
            for k in range(3)
        )  # (F,) each
        in_range = ops.logical_and(ids >= 0, ids < size)  # (B, ..., F)
        return ops.where(in_range, ids, fallback) + first

    def _read(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """`(V[rows], W[rows])`: `rows.shape + (D,)` and `rows.shape`."""
        w = gather_rows(self.linear_weights, rows)
        if self.embeddings is None:  # embedding_dim == 0
            return ops.zeros_like(w)[..., None][..., :0], w
        return gather_rows(self.embeddings, rows), w

    def _pool(
        self, feature: MultiCategorical, ids: Tensor, penalize: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Masked pooling: `(v, w, penalty on the rows read or None)`."""
        ids = ops.cast(ids, "int32")  # (B, L)
        keep = ops.cast(ids > MISSING_ID, self.linear_weights.dtype)  # (B, L)
        # Every slot of a list is the same field: its plan, broadcast.
        rows = self._rows(ids[:, :, None], [feature.name])[:, :, 0]  # (B, L)
        v, w = self._read(rows)  # (B, L, D), (B, L)
        v = v * keep[:, :, None]
        w = w * keep
        penalty = self._penalty(v, w) if penalize else None  # (B,)
        v = ops.sum(v, axis=1)  # (B, L, D) -> (B, D)
        w = ops.sum(w, axis=1)  # (B, L) -> (B,)
        if feature.combiner == "mean":
            count = ops.maximum(ops.sum(keep, axis=1), 1.0)  # (B,)
            v = v / count[:, None]
            w = w / count
        return v, w, penalty

    def _numeric_values(
        self, inputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """`x' = clip((transform(x) - mean) / std)`, 0 for NaN: `(B, Fn)`.

        Also returns where `x` has a value (1.0; 0.0 for NaN), `(B, Fn)`.
        """
        dtype = self.linear_weights.dtype
        x = ops.stack(
            [ops.cast(inputs[f.name], dtype) for f in self._numeric], axis=1
        )  # (B, Fn)
        missing = ops.isnan(x)
        x = ops.where(missing, 0.0, x)
        log = [f.transform == "log1p" for f in self._numeric]
        if any(log):
            # log(1 + x), not log1p: tf2onnx has no converter for Log1p.
            logged = ops.log(ops.maximum(x, 0.0) + 1.0)
            x = (
                logged
                if all(log)
                else ops.where(ops.convert_to_tensor(log), logged, x)
            )
        mean = ops.convert_to_tensor([f.mean for f in self._numeric], dtype)
        std = ops.convert_to_tensor([f.std for f in self._numeric], dtype)
        x = ops.clip((x - mean) / std, -NUMERIC_BOUND, NUMERIC_BOUND)
        present = ops.cast(ops.logical_not(missing), dtype)
        return ops.where(missing, 0.0, x), present  # see `Numeric`


def _add(total: Tensor | None, term: Tensor) -> Tensor:
    return term if total is None else total + term


def _concat(parts: list[Tensor], axis: int) -> Tensor:
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=axis)
