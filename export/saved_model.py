"""SavedModel export for TF Serving: raw features in, named outputs out."""

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# The feature spec beside the model, so clients can check inputs by name.
FEATURES_FILE = os.path.join("assets.extra", "tffm_features.json")


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
    import keras

    from tffm import FeatureEncoder
    from tffm import serialize_feature

    if os.path.exists(path):
        raise FileExistsError(f"Refusing to overwrite {path!r}.")
    encoder = FeatureEncoder(model.features)
    composed = encoder.compose(model, with_logit=True)
    signature = input_signature(model.features)
    archive = keras.export.ExportArchive()
    archive.track(composed)

    def serve(inputs: dict[str, Any]) -> dict[str, Any]:
        return composed(inputs)

    archive.add_endpoint(SIGNATURE, serve, input_signature=[signature])
    archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, FEATURES_FILE), "w") as f:
        json.dump([serialize_feature(x) for x in model.features], f, indent=1)
    if warmup_batch is not None:
        write_warmup(path, model_name or model.name, warmup_batch)
    return path


def input_signature(features: Any) -> dict[str, Any]:
    """`{feature_name: tf.TensorSpec}` of the raw-value signature."""
    import tensorflow as tf

    from tffm import MultiCategorical

    specs = {}
    for feature in features:
        shape = (
            (None, None) if isinstance(feature, MultiCategorical) else (None,)
        )
        specs[feature.name] = tf.TensorSpec(
            shape, tf.as_dtype(feature.dtype), name=feature.name
        )
    return specs


def write_warmup(
    path: str, model_name: str, batch: Mapping[str, np.ndarray]
) -> str:
    """Writes one PredictionLog warmup record for `batch` under `path`."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(
            name=model_name, signature_name=SIGNATURE
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
    out = os.path.join(path, WARMUP_FILE)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tf.io.TFRecordWriter(out) as writer:
        writer.write(log.SerializeToString())
    return out


def write_models_config(
    path: str, models: Mapping[str, str], *, container_root: str = "/models"
) -> str:
    """Writes a TF Serving `models.config` (text proto) for `models`.

    Args:
        path: str. File to write.
        models: dict `{model_name: base_path_on_host}`; the config points at
            `container_root/model_name`, where the base path is mounted.
        container_root: str. Where models live inside the server.

    Returns:
        `path`.
    """
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{container_root}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in models
    )
    with open(path, "w") as f:
        f.write("model_config_list {\n" + entries + "}\n")
    return path
