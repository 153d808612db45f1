"""Raw values -> ONNX feeds, without TensorFlow or Keras.

The raw-input ONNX graph does every lookup itself except hashing, which
standard ONNX cannot do the way TensorFlow does. For hashed features the
graph takes FarmHash `fingerprint64` values (as int64 bits) and applies
`1 + fingerprint % hash_bins` itself; this module computes the fingerprints
(`pyfarmhash` equals TensorFlow's `to_hash_bucket_fast`) and checks every
input, naming the feature when one is wrong.
"""

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

METADATA_FEATURES = "tffm.features"
METADATA_HASH = "tffm.hash"
METADATA_VERSION = "tffm.model_version"
METADATA_OUTPUTS = "tffm.outputs"
HASH_NAME = "farmhash.fingerprint64"


def fingerprint64(values: np.ndarray) -> np.ndarray:
    """FarmHash Fingerprint64 of each UTF-8 string, as int64 bits."""
    import farmhash

    flat = [farmhash.fingerprint64(_as_str(v)) for v in values.reshape(-1)]
    return np.array(flat, dtype=np.uint64).view(np.int64).reshape(values.shape)


class OnnxFeed:
    """Checks raw feature values and builds the ONNX graph's feeds.

    Args:
        features: list of feature dicts (`tffm.serialize_feature` form), as
            stored in the ONNX metadata under `tffm.features`.
    """

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "OnnxFeed":
        if METADATA_FEATURES not in metadata:
            raise ValueError(
                f"The ONNX file has no {METADATA_FEATURES!r} metadata; it "
                "was not written by tffm's raw-input export."
            )
        hash_name = metadata.get(METADATA_HASH, HASH_NAME)
        if hash_name != HASH_NAME:
            raise ValueError(f"Unsupported hash {hash_name!r}.")
        return cls(json.loads(metadata[METADATA_FEATURES]))

    def __call__(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = check_raw(self.features, raw)
        for feature in self.features:
            if feature.get("hash_bins") is not None:
                feeds[feature["name"]] = fingerprint64(feeds[feature["name"]])
        return feeds


def check_raw(
    features: list[dict[str, Any]], raw: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Checks raw values against a feature spec; errors name the feature.

    Checks names (none missing, none unknown), rank, dtype kind and equal
    batch sizes; returns numpy arrays of the exported dtypes (object for
    strings, int64, float32).
    """
    missing = [f["name"] for f in features if f["name"] not in raw]
    if missing:
        raise ValueError(f"Missing features {missing}. Received: {sorted(raw)}")
    unknown = sorted(set(raw) - {f["name"] for f in features})
    if unknown:
        raise ValueError(
            f"Unknown features {unknown}. Expected: "
            f"{[f['name'] for f in features]}"
        )
    checked = {}
    batch_size = None
    for feature in features:
        name = feature["name"]
        value = _check_value(feature, raw[name])
        if batch_size is None:
            batch_size = value.shape[0]
        elif value.shape[0] != batch_size:
            raise ValueError(
                f"Feature {name!r}: batch size {value.shape[0]} differs "
                f"from the other features' {batch_size}."
            )
        checked[name] = value
    return checked


def raw_kind(feature: Mapping[str, Any]) -> tuple[str, int]:
    """Returns `(dtype, rank)` of a feature's raw values."""
    rank = 2 if feature["type"] == "MultiCategorical" else 1
    if feature["type"] == "Numeric":
        return "float32", rank
    vocab = feature.get("vocabulary")
    if vocab and isinstance(vocab[0], int):
        return "int64", rank
    return "string", rank


def _check_value(feature: Mapping[str, Any], value: Any) -> np.ndarray:
    name = feature["name"]
    dtype, rank = raw_kind(feature)
    array = np.asarray(value)
    if array.ndim != rank:
        shape = "(batch_size,)" if rank == 1 else "(batch_size, list_length)"
        raise ValueError(
            f"Feature {name!r} must have shape {shape}. "
            f"Received shape {array.shape}"
        )
    kind = array.dtype.kind
    if dtype == "string":
        if kind not in "USO" or (
            kind == "O"
            and not all(isinstance(v, str | bytes) for v in array.flat)
        ):
            raise ValueError(
                f"Feature {name!r} takes strings. Received dtype {array.dtype}"
            )
        return np.vectorize(_as_str, otypes=[object])(array).astype(object)
    if dtype == "int64":
        if kind not in "iu":
            raise ValueError(
                f"Feature {name!r} takes integers. Received dtype {array.dtype}"
            )
        return array.astype(np.int64)
    if kind not in "fiu":
        raise ValueError(
            f"Feature {name!r} takes numbers. Received dtype {array.dtype}"
        )
    return array.astype(np.float32)


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
