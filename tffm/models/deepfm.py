"""DeepFM (Guo et al. 2017): FM and a DNN over the same embeddings."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras

from tffm.checks import check_int
from tffm.features import Feature
from tffm.features import normalize_features
from tffm.layers.feature_embedding import FeatureEmbedding
from tffm.layers.fm_interaction import FMInteraction
from tffm.layers.linear import LinearTerm
from tffm.layers.mlp import MLP
from tffm.models.base import FactorizationModel
from tffm.models.base import feature_inputs
from tffm.models.base import numeric_fields
from tffm.models.base import output_head
from tffm.models.base import validate_task


@keras.saving.register_keras_serializable(package="tffm")
class DeepFM(FactorizationModel):
    """DeepFM: `sigmoid(y_linear + y_FM + y_DNN)` over shared embeddings.

    One `FeatureEmbedding` (a fused table) is read once per batch; its field
    vectors `(batch_size, num_fields, embedding_dim)` feed both the FM
    interaction and, flattened, the DNN, and its linear column feeds the
    first-order term. So the FM and DNN parts train the same variables, as
    in the paper.

    Inputs: one per feature, encoded (see `tffm.FeatureEncoder`). Output
    `(batch_size, 1)` from the layer `probability` (`prediction` for
    `task="regression"`); the layer `logit` holds the sum before the link.

    Args:
        features: list of tffm features (or their dicts).
        embedding_dim: int. Field vector size. Defaults to 8.
        hidden_units: list of int. DNN widths. Defaults to `(400, 400, 400)`
            as in the paper.
        activation: str. DNN activation. Defaults to `"relu"`.
        dropout: float. DNN dropout rate. Defaults to 0.
        batch_norm: bool. Batch normalization in the DNN. Defaults to False.
        embeddings_l2: float. L2 penalty on the embedding rows a batch reads.
        table_l2: float. L2 penalty on the whole embedding table.
        linear_l2: float or None. `embeddings_l2`'s penalty on the linear
            weights of the rows read; None (default): `embeddings_l2`.
        kernel_l2: float. L2 penalty on the DNN kernels.
        task: str. `"binary"` (default) or `"regression"`.
        dtype: dtype policy of every layer (e.g. `"mixed_bfloat16"`); the
            output head stays float32. Defaults to Keras' global policy.
        **kwargs: Base `keras.Model` arguments (`name`).

    References:
        - [Guo et al., 2017](https://arxiv.org/abs/1703.04247)
    """

    def __init__(
        self,
        features: Sequence[Feature | Mapping[str, Any]],
        *,
        embedding_dim: int = 8,
        hidden_units: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        embeddings_l2: float = 0.0,
        table_l2: float = 0.0,
        linear_l2: float | None = None,
        kernel_l2: float = 0.0,
        task: str = "binary",
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        validate_task(task)
        check_int("embedding_dim", embedding_dim, 1)
        spec = normalize_features(features)

        # === Layers ===
        embedding = FeatureEmbedding(
            spec,
            embedding_dim,
            embeddings_l2=embeddings_l2,
            table_l2=table_l2,
            linear_l2=linear_l2,
            name="feature_embedding",
            dtype=dtype,
        )
        dnn = MLP(
            hidden_units,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            kernel_l2=kernel_l2,
            name="dnn",
            dtype=dtype,
        )

        # === Functional Model ===
        inputs = feature_inputs(spec)
        v, w = embedding(inputs)  # (B, F, D), (B, F)
        y_linear = LinearTerm(name="linear", dtype=dtype)(w)  # (B, 1)
        y_fm = FMInteraction(
            exact_fields=numeric_fields(spec),
            name="fm_interaction",
            dtype=dtype,
        )(v)  # (B, 1)
        flat = keras.layers.Flatten(name="flatten", dtype=dtype)(v)  # (B, F*D)
        y_dnn = dnn(flat)  # (B, 1)
        outputs = output_head([y_linear, y_fm, y_dnn], task)
        super().__init__(inputs, outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.features = spec
        self.embedding_dim = embedding_dim
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.embeddings_l2 = embeddings_l2
        self.table_l2 = table_l2
        self.linear_l2 = linear_l2
        self.kernel_l2 = kernel_l2
        self.task = task
