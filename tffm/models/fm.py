"""Factorization machine model (Rendle 2010), optionally higher order."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any, Literal

import keras

from tffm.features import Feature
from tffm.features import normalize_features
from tffm.layers.feature_embedding import FeatureEmbedding
from tffm.layers.fm_interaction import FMInteraction
from tffm.layers.linear import LinearTerm
from tffm.layers.sparse_embedding import SparseEmbedding
from tffm.models.base import FactorizationModel
from tffm.models.base import feature_inputs
from tffm.models.base import numeric_fields
from tffm.models.base import output_head
from tffm.models.base import validate_task


@keras.saving.register_keras_serializable(package="tffm")
class FM(FactorizationModel):
    """Factorization machine `w0 + sum w_i x_i + sum_{i<j} <v_i,v_j> x_i x_j`.

    Two input forms:
    - `features=[...]` (a tffm feature spec): one input per feature, named by
      it, holding encoded ids / numeric values (see `tffm.FeatureEncoder`
      for raw values). Each field is one `x_i = 1` (categorical), `x_i =`
      value (numeric) or a pooled list;
    - `num_features=n`: a real-valued design matrix in padded sparse
      (libsvm / libFM) form, inputs `indices` `(batch_size, num_nonzeros)`
      int (padding `-1`) and `values` `(batch_size, num_nonzeros)` float.

    With `order > 2` the interactions of every order `2 .. order` are added,
    all from the same factors (a shared-factor higher-order FM).
    `embedding_dim=0` gives logistic (or linear) regression.

    Outputs `(batch_size, 1)`: `probability` (layer name) for
    `task="binary"`, `prediction` for `task="regression"`; the layer named
    `logit` holds the value before the link.

    Args:
        features: list of tffm features (or their dicts).
        num_features: int. Columns of the sparse design matrix (instead of
            `features`).
        embedding_dim: int. Factor size `k`. Defaults to 8.
        order: int. Highest interaction order, 2 to 4. Defaults to 2.
        task: str. `"binary"` (sigmoid output, default) or `"regression"`.
        embeddings_l2: float. L2 penalty on the table rows a batch reads
            (feature-spec form only). Defaults to 0.
        table_l2: float. L2 penalty on the whole table (feature-spec form
            only). Defaults to 0.
        linear_l2: float or None. `embeddings_l2`'s penalty on the linear
            weights of the rows read; None (default): `embeddings_l2`
            (feature-spec form only).
        dtype: dtype policy of every layer (e.g. `"mixed_bfloat16"`); the
            output head stays float32. Defaults to Keras' global policy.
        **kwargs: Base `keras.Model` arguments (`name`).

    References:
        - [Rendle, 2010](https://doi.org/10.1109/ICDM.2010.127)
        - [Blondel et al., 2016](https://arxiv.org/abs/1607.07195)
    """

    def __init__(
        self,
        features: Sequence[Feature | Mapping[str, Any]] | None = None,
        *,
        num_features: int | None = None,
        embedding_dim: int = 8,
        order: int = 2,
        task: str = "binary",
        embeddings_l2: float = 0.0,
        table_l2: float = 0.0,
        linear_l2: float | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if (features is None) == (num_features is None):
            raise ValueError(
                "Give exactly one of `features` and `num_features`. "
                f"Received: features={features!r}, "
                f"num_features={num_features!r}"
            )
        validate_task(task)
        if isinstance(order, bool) or order not in (2, 3, 4):
            raise ValueError(
                f"`order` must be one of (2, 3, 4). Received: order={order!r}"
            )
        spec = None if features is None else normalize_features(features)

        # === Layers ===
        inputs: dict[str, keras.KerasTensor]
        if spec is not None:
            embedding: keras.layers.Layer = FeatureEmbedding(
                spec,
                embedding_dim,
                embeddings_l2=embeddings_l2,
                table_l2=table_l2,
                linear_l2=linear_l2,
                name="feature_embedding",
                dtype=dtype,
            )
            inputs = feature_inputs(spec)
        else:
            if embeddings_l2 or table_l2 or linear_l2:
                raise ValueError(
                    "`embeddings_l2`, `table_l2` and `linear_l2` apply to the "
                    "feature-spec form only. Received: "
                    f"embeddings_l2={embeddings_l2!r}, table_l2={table_l2!r}, "
                    f"linear_l2={linear_l2!r} with "
                    f"num_features={num_features!r}"
                )
            embedding = SparseEmbedding(
                num_features,  # type: ignore[arg-type]
                embedding_dim,
                name="sparse_embedding",
                dtype=dtype,
            )
            inputs = {
                "indices": keras.Input(
                    shape=(None,), dtype="int32", name="indices"
                ),
                "values": keras.Input(
                    shape=(None,), dtype="float32", name="values"
                ),
            }
        # Numeric fields (or every slot of a real-valued design-matrix row)
        # may dominate the others: see `FMInteraction`'s `exact_fields`.
        exact: list[int] | Literal["all"] = (
            "all" if spec is None else numeric_fields(spec)
        )
        interactions = [
            FMInteraction(
                order=t,
                exact_fields=exact,
                name=f"fm_interaction_{t}",
                dtype=dtype,
            )
            for t in range(2, order + 1)
        ]

        # === Functional Model ===
        if spec is not None:
            v, w = embedding(inputs)  # (B, F, D), (B, F)
        else:
            v, w = embedding(inputs["indices"], inputs["values"])
        parts = [LinearTerm(name="linear", dtype=dtype)(w)]  # (B, 1)
        parts += [layer(v) for layer in interactions]  # (B, 1) each
        outputs = output_head(parts, task)
        super().__init__(inputs, outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.features = spec
        self.num_features = num_features
        self.embedding_dim = embedding_dim
        self.order = order
        self.task = task
        self.embeddings_l2 = embeddings_l2
        self.table_l2 = table_l2
        self.linear_l2 = linear_l2
