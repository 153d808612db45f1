"""In-process SavedModel predictor with input checks that name the feature."""

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.onnx_feed import check_raw

_FEATURES_FILE = os.path.join("assets.extra", "tffm_features.json")


class SavedModelPredictor:
    """Calls a tffm SavedModel's `serving_default` on raw feature values.

    TensorFlow itself rejects a wrongly typed input by position ("input #1
    was expected to be a string tensor"); this checks the values against the
    feature spec stored beside the model first, so errors name the feature.

    Args:
        path: str. A SavedModel version directory written by
            `export.export_saved_model`.
    """

    def __init__(self, path: str) -> None:
        import tensorflow as tf

        with open(os.path.join(path, _FEATURES_FILE)) as f:
            self.features = json.load(f)
        self.signature = tf.saved_model.load(path).signatures["serving_default"]

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: (batch_size, 1) float32}`."""
        import tensorflow as tf

        feeds = {
            name: tf.constant(
                value.tolist() if value.dtype == object else value
            )
            for name, value in check_raw(self.features, raw).items()
        }
        return {k: v.numpy() for k, v in self.signature(**feeds).items()}
