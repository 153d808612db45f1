"""Raw features in, probabilities out, with onnxruntime and no TensorFlow."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.feed import OnnxFeed
from tffm import constants
from tffm.features import Feature


class OnnxPredictor:
    """Runs a tffm raw-input ONNX file on raw feature values.

    Imports neither TensorFlow nor Keras: hashed features are fingerprinted
    with `pyfarmhash` (TensorFlow's `to_hash_bucket_fast` hash), everything
    else happens inside the ONNX graph. Inputs are checked first, and errors
    name the feature.

    Args:
        path: str. A `.onnx` file written by `export.export_onnx`.
        providers: list of onnxruntime execution providers. Defaults to CPU.

    Example:
    >>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
    >>> predictor.predict({"city": ["paris"], "price": [3.0]})  # doctest: +SKIP
    {'probability': array([[0.62]], dtype=float32), 'logit': ...}
    """

    def __init__(self, path: str, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            path, providers=providers or ["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.feed = OnnxFeed.from_metadata(metadata)
        self.version = int(metadata.get(constants.ONNX_VERSION, "0"))
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.feed.features

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.feed.features]

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: (batch_size, 1) float32}` for raw values."""
        outputs = self.session.run(self.output_names, self.feed(raw))
        return dict(zip(self.output_names, outputs, strict=True))
