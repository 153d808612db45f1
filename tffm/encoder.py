"""Raw feature values -> model inputs, with Keras preprocessing layers."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tffm import constants
from tffm.features import INT_MISSING
from tffm.features import STRING_MISSING
from tffm.features import Feature
from tffm.features import Lookup
from tffm.features import check_raw
from tffm.features import normalize_features
from tffm.types import Tensor


class FeatureEncoder:
    """Turns raw feature values into the inputs of tffm models.

    Built from Keras preprocessing layers only (`StringLookup`,
    `IntegerLookup`, `Hashing`), so the same encoder works in two places:
    - inside a TensorFlow-backend Keras model (`compose`), which is what the
      SavedModel export serves: raw strings / numbers / lists in;
    - in a `tf.data` pipeline (`map_dataset`), which lets models train under
      the JAX and torch backends on raw data.

    Raw values: `Categorical` takes strings (or ints, for an int vocabulary)
    of shape `(batch_size,)`, `""` / `-1` meaning missing; hashed features
    take strings. `MultiCategorical` takes `(batch_size, list_length)`
    padded with `""` / `-1`. `Numeric` takes floats `(batch_size,)`, NaN
    meaning missing; it passes through (the model normalizes it).

    Args:
        features: list of tffm features (or their dicts).
    """

    def __init__(self, features: Sequence[Feature | Mapping[str, Any]]):
        self.features = normalize_features(features)
        self.layers: dict[str, keras.layers.Layer] = {
            f.name: _lookup_layer(f)
            for f in self.features
            if isinstance(f, Lookup)
        }

    def raw_inputs(self) -> dict[str, keras.KerasTensor]:
        """One `keras.Input` per feature, taking raw values."""
        return {
            f.name: keras.Input(shape=f.shape, dtype=f.dtype, name=f.name)
            for f in self.features
        }

    def __call__(self, raw: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Encodes a dict of raw values (tensors, arrays or Keras inputs)."""
        missing = [f.name for f in self.features if f.name not in raw]
        if missing:
            raise ValueError(
                f"Missing raw values for features {missing}. "
                f"Received keys: {sorted(raw)}"
            )
        return {
            f.name: self.layers[f.name](raw[f.name])
            if f.name in self.layers
            else raw[f.name]
            for f in self.features
        }

    def compose(
        self, model: keras.Model, *, with_logit: bool = False
    ) -> keras.Model:
        """Returns a model taking raw values (TensorFlow backend).

        Args:
            model: a tffm model built on the same features.
            with_logit: bool. If `True`, outputs are a dict
                `{"probability" | "prediction": ..., "logit": ...}`, the
                names the export artifacts use; else the model's output.
        """
        _check_same_features(self.features, model)
        core = output_model(model) if with_logit else model
        raw = self.raw_inputs()
        return keras.Model(raw, core(self(raw)), name=f"{model.name}_raw")

    def map_dataset(self, dataset: Any) -> Any:
        """Maps a `tf.data.Dataset` of `(raw_dict, label[, weight])`."""

        def encode(features: Any, *rest: Any) -> Any:
            return (self(features), *rest)

        return dataset.map(encode, num_parallel_calls=-1)


def output_model(model: keras.Model) -> keras.Model:
    """Returns a view of a tffm model with named outputs, same weights.

    Outputs `{"probability": (batch_size, 1), "logit": (batch_size, 1)}`
    for binary models, `{"prediction": ..., "logit": ...}` for regression.
    """
    head = constants.HEAD[model.task]
    outputs = {
        head: model.get_layer(head).output,
        constants.LOGIT: model.get_layer(constants.LOGIT).output,
    }
    return keras.Model(model.inputs, outputs, name=f"{model.name}_outputs")


def to_tensors(
    features: Sequence[Feature], raw: Mapping[str, Any]
) -> dict[str, Any]:
    """Raw values (lists, numpy) -> checked TensorFlow tensors, by feature.

    The one place raw values become `tf.Tensor`s (the encoder's Keras
    preprocessing layers and the SavedModel signature take them). Values
    are checked by `tffm.features.check_raw`, so errors name the feature.
    """
    import tensorflow as tf  # deferred: TensorFlow

    return {
        name: tf.constant(value)
        for name, value in check_raw(features, raw).items()
    }


class KerasPredictor:
    """Raw values in, `{probability | prediction, logit}` numpy out.

    The Keras model with its encoder, behind the same `predict(raw)` as
    `serving.OnnxPredictor` and `export.SavedModelPredictor`.

    Args:
        model: a tffm model with a feature spec.
    """

    def __init__(self, model: keras.Model) -> None:
        self.features = tuple(model.features)
        self.encoder = FeatureEncoder(self.features)
        self.model = output_model(model)

    def encode(self, raw: Mapping[str, Any]) -> dict[str, Tensor]:
        """The model's encoded inputs (ids, values) for raw values."""
        return self.encoder(to_tensors(self.features, raw))

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: (batch_size, 1) float32}` for raw values."""
        return run_numpy(self.model, self.encode(raw))


def run_numpy(
    model: keras.Model, inputs: Mapping[str, Tensor]
) -> dict[str, np.ndarray]:
    """`{output_name: numpy array}` of a named-output model, not training."""
    outputs = model(inputs, training=False)
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def _lookup_layer(feature: Lookup) -> keras.layers.Layer:
    name = f"{feature.name}_lookup"
    if feature.hash_bins is not None:
        # Bucket 0 is the mask ("" = missing); others get
        # 1 + fingerprint64(value) % hash_bins.
        return keras.layers.Hashing(
            num_bins=feature.hash_bins + 1, mask_value=STRING_MISSING, name=name
        )
    if feature.dtype == "int64":
        return keras.layers.IntegerLookup(
            vocabulary=list(feature.vocabulary or ()),
            mask_token=INT_MISSING,
            num_oov_indices=1,
            name=name,
        )
    return keras.layers.StringLookup(
        vocabulary=list(feature.vocabulary or ()),
        mask_token=STRING_MISSING,
        num_oov_indices=1,
        name=name,
    )


def _check_same_features(features: Sequence[Feature], model: Any) -> None:
    model_features = getattr(model, "features", None)
    if model_features is None or tuple(model_features) != tuple(features):
        raise ValueError(
            "The model was not built on this encoder's features. "
            f"Encoder features: {[f.name for f in features]}; model "
            f"features: {[f.name for f in model_features or ()]}"
        )
