"""SavedModel export for TF Serving: raw features in, named outputs out."""

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.precision import float32_model
from tffm import constants
from tffm.features import Feature
from tffm.features import Numeric
from tffm.features import features_from_json
from tffm.features import features_to_json


def export_saved_model(
    model: Any,
    path: str,
    *,
    model_name: str | None = None,
    warmup_batch: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Writes a SavedModel whose `serving_default` takes raw feature values.

    The signature's inputs are named by feature: `string` (or `int64` for an
    integer vocabulary) `(batch_size,)` for categorical features,
    `(batch_size, list_length)` for multi-valued ones, `float32`
    `(batch_size,)` for numeric ones; the batch dimension is dynamic. Its
    outputs are `probability` (or `prediction`) and `logit`, each
    `(batch_size, 1)` float32. The graph holds only standard TensorFlow ops
    (lookup tables, `StringToHashBucketFast`): no `py_function`, so TF
    Serving runs it without Python.

    Args:
        model: a tffm `FM` (feature-spec form) or `DeepFM`.
        path: str. Directory to write (TF Serving's `<base>/<name>/<version>`
            when called by `export_for_serving`); must not exist.
        model_name: str. Name used in the warmup requests' `model_spec`.
            Defaults to `model.name`.
        warmup_batch: dict of raw values. If given, written as TF Serving
            warmup records in `assets.extra/tf_serving_warmup_requests`.

    Returns:
        `path`.
    """
    model = float32_model(model)
    import keras  # deferred: Keras

    from tffm.encoder import FeatureEncoder  # deferred: Keras

    if os.path.exists(path):
        raise FileExistsError(f"Refusing to overwrite {path!r}.")
    encoder = FeatureEncoder(model.features)
    composed = encoder.compose(model, with_logit=True)
    archive = keras.export.ExportArchive()
    # Track the lookup tables only: the endpoint's variables are tracked by
    # `add_endpoint`, and tracking the whole model too would save every
    # weight twice (Keras 3.15 checkpoints both its `variables` and its
    # `_all_variables`: a 2.5 GB table took 5 GB on disk).
    for layer in encoder.layers.values():
        archive.track(layer)

    def serve(inputs: dict[str, Any]) -> Any:
        return composed(_refuse_infinite(model.features, inputs))

    archive.add_endpoint(
        constants.SIGNATURE_NAME,
        serve,
        input_signature=[input_signature(model.features)],
    )
    archive.write_out(path, verbose=False)
    features_file = os.path.join(path, constants.FEATURES_FILE)
    os.makedirs(os.path.dirname(features_file), exist_ok=True)
    with open(features_file, "w") as f:
        f.write(features_to_json(model.features))
    if warmup_batch is not None:
        write_warmup(path, model_name or model.name, warmup_batch)
    return path


def _refuse_infinite(features: Any, inputs: dict[str, Any]) -> Any:
    """Fails the request on infinite numerics, naming the feature.

    TF Serving parses JSON numbers beyond float32 as infinities, which
    would come out as a NaN probability; the check refuses them as every
    other tffm entry point does (NaN stays "missing").
    """
    import tensorflow as tf  # deferred: TensorFlow

    checks = [
        tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(tf.math.is_inf(inputs[f.name]))),
            [
                # No quotes: TensorFlow escapes them in assertion messages.
                f"Feature {f.name}: infinite or beyond float32 (+-3.4e38) "
                "values are refused; NaN means missing."
            ],
        )
        for f in features
        if isinstance(f, Numeric)
    ]
    with tf.control_dependencies(checks):
        return {k: tf.identity(v) for k, v in inputs.items()}


def input_signature(features: Any) -> dict[str, Any]:
    """`{feature_name: tf.TensorSpec}` of the raw-value signature."""
    import tensorflow as tf  # deferred: TensorFlow

    return {
        f.name: tf.TensorSpec(
            (None, *f.shape), tf.as_dtype(f.dtype), name=f.name
        )
        for f in features
    }


class SavedModelPredictor:
    """Calls a tffm SavedModel's `serving_default` on raw feature values.

    TensorFlow itself rejects a wrongly typed input by position ("input #1
    was expected to be a string tensor"); this checks the values against the
    feature spec stored beside the model first, so errors name the feature.

    Args:
        path: str. A SavedModel version directory written by
            `export_saved_model`.
    """

    def __init__(self, path: str) -> None:
        import tensorflow as tf  # deferred: TensorFlow

        features_file = os.path.join(path, constants.FEATURES_FILE)
        if not os.path.isfile(features_file):
            raise FileNotFoundError(
                f"{path!r} is not a tffm SavedModel (no "
                f"{constants.FEATURES_FILE})."
            )
        with open(features_file) as f:
            self.features: tuple[Feature, ...] = features_from_json(f.read())
        self.signature = tf.saved_model.load(path).signatures[
            constants.SIGNATURE_NAME
        ]

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: (batch_size, 1) float32}`."""
        from tffm.encoder import to_tensors  # deferred: Keras

        feeds = to_tensors(self.features, raw)
        return {k: v.numpy() for k, v in self.signature(**feeds).items()}


def write_warmup(
    path: str, model_name: str, batch: Mapping[str, np.ndarray]
) -> str:
    """Writes one PredictionLog warmup record for `batch` under `path`."""
    import tensorflow as tf  # deferred: TensorFlow
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(
            name=model_name, signature_name=constants.SIGNATURE_NAME
        )
    )
    for name, values in batch.items():
        array = np.asarray(values)
        if array.dtype.kind in "OU":
            array = array.astype(object)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    out = os.path.join(path, constants.WARMUP_FILE)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tf.io.TFRecordWriter(out) as writer:
        writer.write(log.SerializeToString())
    return out


def write_models_config(path: str, models: Mapping[str, str]) -> str:
    """Writes a TF Serving `models.config` (text proto) for `models`.

    Args:
        path: str. File to write.
        models: dict `{model_name: base_path}`; each base path is written
            as given: the directory, as the server sees it, that holds the
            model's numbered version directories (e.g. `/models/ctr` in
            the TF Serving container).

    Returns:
        `path`.
    """
    entries = "".join(
        "  config {\n"
        f"    name: {_quote(name)}\n"
        f"    base_path: {_quote(base_path)}\n"
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name, base_path in models.items()
    )
    with open(path, "w") as f:
        f.write("model_config_list {\n" + entries + "}\n")
    return path


def _quote(text: str) -> str:
    """A text-proto string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
