"""Factor vectors of a sparse design-matrix row (libsvm / libFM form)."""

from typing import Any

import keras
from keras import ops

from tffm.checks import check_int
from tffm.types import Tensor


@keras.saving.register_keras_serializable(package="tffm")
class SparseEmbedding(keras.layers.Layer):
    """Scaled factor vectors `v_i * x_i` and linear terms `w_i * x_i`.

    A design-matrix row is given in padded sparse form: the column
    `indices` of its non-zeros and their `values`. Padding slots have index
    `-1` (any index outside `[0, num_features)` counts as padding) and add
    nothing. Feeding the result to `FMInteraction` gives Rendle's
    `sum_{i<j} <v_i, v_j> x_i x_j` exactly, provided a row lists each column
    at most once.

    Args:
        num_features: int. Number of columns of the design matrix.
        embedding_dim: int. Factor size `k` (`>= 0`).
        embeddings_initializer: Initializer of the `(num_features,
            embedding_dim + 1)` table (last column = linear weights).
            Defaults to `RandomNormal(stddev=0.01)`.
        **kwargs: Base `keras.layers.Layer` arguments.

    Call arguments:
        indices: int tensor of shape `(batch_size, num_nonzeros)`.
        values: float tensor of shape `(batch_size, num_nonzeros)`.

    Returns:
        Tuple `(embeddings, linear)` of shapes `(batch_size, num_nonzeros,
        embedding_dim)` and `(batch_size, num_nonzeros)`.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        check_int("num_features", num_features, 1)
        check_int("embedding_dim", embedding_dim, 0)
        super().__init__(**kwargs)
        self.num_features = num_features
        self.embedding_dim = embedding_dim
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
            or keras.initializers.RandomNormal(stddev=0.01)
        )

    def build(
        self,
        indices_shape: tuple[int | None, ...],
        values_shape: tuple[int | None, ...],
    ) -> None:
        if len(indices_shape) != 2 or tuple(indices_shape[1:]) != tuple(
            values_shape[1:]
        ):
            raise ValueError(
                "`indices` and `values` must both have shape (batch_size, "
                f"num_nonzeros). Received: indices.shape={indices_shape}, "
                f"values.shape={values_shape}"
            )
        self.table = self.add_weight(
            name="table",
            shape=(self.num_features, self.embedding_dim + 1),
            initializer=self.embeddings_initializer,
        )

    def call(self, indices: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        indices = ops.cast(indices, "int32")  # (B, K)
        valid = ops.logical_and(indices >= 0, indices < self.num_features)
        x = ops.where(valid, ops.cast(values, self.table.dtype), 0.0)  # (B, K)
        rows = ops.take(
            self.table, ops.where(valid, indices, 0), axis=0
        )  # (B, K, D+1)
        scaled = rows * x[:, :, None]  # (B, K, D+1)
        return scaled[:, :, : self.embedding_dim], scaled[:, :, -1]

    def compute_output_shape(
        self,
        indices_shape: tuple[int | None, ...],
        values_shape: tuple[int | None, ...],
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        batch, nnz = indices_shape
        return (batch, nnz, self.embedding_dim), (batch, nnz)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            {
                "num_features": self.num_features,
                "embedding_dim": self.embedding_dim,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
