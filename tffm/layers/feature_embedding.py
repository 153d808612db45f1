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
from tffm.features import Lookup
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import normalize_features
from tffm.features import serialize_feature
from tffm.features import table_layout
from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class FeatureEmbedding(keras.layers.Layer):
    """Field embeddings and linear weights from one fused table.

    Every field is logically its own table but all live, at fixed offsets, in
    one variable of shape `(num_rows, embedding_dim + 1)`: columns
    `[:embedding_dim]` are the FM/DNN vectors `v`, the last column is the
    linear weight `w` (the layout HugeCTR uses). One gather serves all
    single-valued fields; features that name the same `table` share rows.

    Per field:
    - `Categorical`: `v = V[id]`, `w = W[id]`;
    - `MultiCategorical`: mean or sum of `V[id]` over non-padding ids (an
      empty list gives zeros);
    - `Numeric`: `v = x' * V[field]`, `w = x' * W[field]`, with
      `x' = (transform(x) - mean) / std` clipped to `+-NUMERIC_BOUND` and
      `x' = 0` for NaN.

    Ids outside a field's range are read as that field's out-of-vocabulary id
    (missing id for hashed fields), never as another field's rows.

    Args:
        features: list of tffm features (or their dicts).
        embedding_dim: int. Size of each field vector (`>= 0`; 0 leaves only
            the linear weights, i.e. logistic regression).
        embeddings_initializer: Initializer of the fused table. Defaults to
            `RandomNormal(stddev=0.01)`.
        embeddings_l2: float. L2 penalty on the rows a batch reads (their
            squared norms, summed over fields, averaged over the batch):
            the untouched rows get no gradient, unlike a full-table
            regularizer. Defaults to 0.
        table_l2: float. L2 penalty on the whole table, every step
            (`table_l2 * sum(table ** 2)`): rare values are held back as
            much as frequent ones, which small data sets need; costs a dense
            update of the table. Defaults to 0.
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
        **kwargs: Any,
    ) -> None:
        features = normalize_features(features)
        check_int("embedding_dim", embedding_dim, 0)
        check_non_negative("embeddings_l2", embeddings_l2)
        check_non_negative("table_l2", table_l2)
        super().__init__(**kwargs)
        self.features = features
        self.embedding_dim = embedding_dim
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
            or keras.initializers.RandomNormal(stddev=0.01)
        )
        self.embeddings_l2 = float(embeddings_l2)
        self.table_l2 = float(table_l2)
        layout = table_layout(features)
        self.num_rows = sum(rows for _, rows in layout.values())
        self._single = [f for f in features if isinstance(f, Categorical)]
        self._multi = [f for f in features if isinstance(f, MultiCategorical)]
        self._numeric = [f for f in features if isinstance(f, Numeric)]
        self._offsets = {f.name: layout[f.table_name][0] for f in features}
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
        self.table = self.add_weight(
            name="table",
            shape=(self.num_rows, self.embedding_dim + 1),
            initializer=self.embeddings_initializer,
            regularizer=keras.regularizers.L2(self.table_l2)
            if self.table_l2
            else None,
        )

    def call(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        parts = []
        penalty = None
        if self._single:
            rows = ops.stack(
                [self._rows(f, inputs[f.name]) for f in self._single], axis=1
            )  # (B, Fc)
            gathered = ops.take(self.table, rows, axis=0)  # (B, Fc, D+1)
            parts.append(gathered)
            penalty = ops.sum(ops.square(gathered), axis=(1, 2))  # (B,)
        for feature in self._multi:
            pooled, sq = self._pool(feature, inputs[feature.name])
            parts.append(ops.expand_dims(pooled, 1))  # (B, 1, D+1)
            penalty = sq if penalty is None else penalty + sq
        if self._numeric:
            x = ops.stack(
                [
                    _numeric_value(f, inputs[f.name], self.table.dtype)
                    for f in self._numeric
                ],
                axis=1,
            )  # (B, Fn)
            offsets = [self._offsets[f.name] for f in self._numeric]
            weights = ops.take(self.table, offsets, axis=0)  # (Fn, D+1)
            parts.append(x[:, :, None] * weights[None])  # (B, Fn, D+1)
        fused = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)
        if self._order != sorted(self._order):
            fused = ops.take(fused, self._order, axis=1)  # (B, F, D+1)
        if self.embeddings_l2 and penalty is not None:
            self.add_loss(self.embeddings_l2 * ops.mean(penalty))
        embeddings = fused[:, :, : self.embedding_dim]  # (B, F, D)
        linear = fused[:, :, self.embedding_dim]  # (B, F)
        return embeddings, linear

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
            }
        )
        return config

    def _rows(self, feature: Lookup, ids: Tensor) -> Tensor:
        """Maps a field's ids to rows of the fused table."""
        ids = ops.cast(ids, "int32")
        fallback = MISSING_ID if feature.hash_bins is not None else OOV_ID
        in_range = ops.logical_and(ids >= 0, ids < feature.num_ids)
        ids = ops.where(in_range, ids, fallback)
        return ids + self._offsets[feature.name]

    def _pool(
        self, feature: MultiCategorical, ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Masked pooling; returns `(pooled, squared_norm_of_read_rows)`."""
        ids = ops.cast(ids, "int32")  # (B, L)
        keep = ops.cast(ids > MISSING_ID, self.table.dtype)  # (B, L)
        gathered = ops.take(
            self.table, self._rows(feature, ids), axis=0
        )  # (B, L, D+1)
        gathered = gathered * keep[:, :, None]  # (B, L, D+1)
        pooled = ops.sum(gathered, axis=1)  # (B, L, D+1) -> (B, D+1)
        if feature.combiner == "mean":
            count = ops.sum(keep, axis=1, keepdims=True)  # (B, 1)
            pooled = pooled / ops.maximum(count, 1.0)
        return pooled, ops.sum(ops.square(gathered), axis=(1, 2))


def _numeric_value(feature: Numeric, x: Tensor, dtype: str) -> Tensor:
    x = ops.cast(x, dtype)  # (B,)
    missing = ops.isnan(x)
    x = ops.where(missing, 0.0, x)
    if feature.transform == "log1p":
        # log(1 + x), not log1p: tf2onnx has no converter for Log1p.
        x = ops.log(ops.maximum(x, 0.0) + 1.0)
    x = (x - feature.mean) / feature.std
    x = ops.clip(x, -NUMERIC_BOUND, NUMERIC_BOUND)  # (B,), see `Numeric`
    return ops.where(missing, 0.0, x)
