"""Raw values -> the feeds of a tffm raw-input ONNX graph (no TensorFlow).

The raw-input ONNX graph does every lookup itself except hashing, which
standard ONNX cannot do the way TensorFlow does. For hashed features the
graph takes FarmHash `fingerprint64` values (as int64 bits) and applies
`1 + fingerprint % hash_bins` itself; this module computes the fingerprints
(`pyfarmhash` equals TensorFlow's `to_hash_bucket_fast`). Inputs are
checked by `tffm.features.check_raw`, so errors name the feature.
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm import constants
from tffm.features import Feature
from tffm.features import check_raw
from tffm.features import features_from_json


def fingerprint64(values: np.ndarray) -> np.ndarray:
    """FarmHash Fingerprint64 of each string (object array), as int64 bits."""
    import farmhash

    flat = [farmhash.fingerprint64(v) for v in values.reshape(-1)]
    return np.array(flat, dtype=np.uint64).view(np.int64).reshape(values.shape)


class OnnxFeed:
    """Checks raw feature values and builds the ONNX graph's feeds.

    Args:
        features: the model's feature spec (as stored in the ONNX metadata
            under `tffm.features`).
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = tuple(features)
        self.hashed = [
            f.name for f in self.features if getattr(f, "hash_bins", None)
        ]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "OnnxFeed":
        """The feed of an ONNX file, from its `metadata_props`."""
        if constants.ONNX_FEATURES not in metadata:
            raise ValueError(
                f"The ONNX file has no {constants.ONNX_FEATURES!r} metadata; "
                "it was not written by tffm's raw-input export."
            )
        if metadata.get(constants.ONNX_INPUTS, "raw") != "raw":
            raise ValueError(
                "The ONNX file takes encoded ids (an `.ids.onnx` core), not "
                "raw values; use the raw-input `.onnx` written beside it."
            )
        hash_name = metadata.get(constants.ONNX_HASH, constants.HASH_NAME)
        if hash_name != constants.HASH_NAME:
            raise ValueError(f"Unsupported hash {hash_name!r}.")
        return cls(features_from_json(metadata[constants.ONNX_FEATURES]))

    def __call__(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feeds = check_raw(self.features, raw)
        for name in self.hashed:
            feeds[name] = fingerprint64(feeds[name])
        return feeds
