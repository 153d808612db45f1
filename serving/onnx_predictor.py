"""Raw features in, probabilities out, with onnxruntime and no TensorFlow."""

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.feed import OnnxFeed
from tffm import constants
from tffm.features import Feature

# onnxruntime's message for an external data file that is not there.
_MISSING_DATA = re.compile(r'External data path does not exist: "?([^"]+)"?')


class OnnxPredictor:
    """Runs a tffm raw-input ONNX file on raw feature values.

    Imports neither TensorFlow nor Keras: hashed features are fingerprinted
    in numpy (`serving.fingerprint`, TensorFlow's `to_hash_bucket_fast`
    hash), everything else happens inside the ONNX graph. Inputs are checked
    first, and errors name the feature. `predict` is safe to call from
    several threads at once (onnxruntime sessions are).

    A model exported with external data (weights over 1 GiB) loads its
    weights from `<path>.data` beside the file.

    Args:
        path: str. A `.onnx` file written by `export.export_onnx`.
        providers: list of onnxruntime execution providers. Defaults to CPU.
        threads: int. onnxruntime intra-op threads (0: onnxruntime's default,
            one per core). Servers running many requests at once want 1.
        session_options: an `onnxruntime.SessionOptions`; overrides
            `threads`.

    Example:
    >>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
    >>> predictor.predict({"city": ["paris"], "price": [3.0]})  # doctest: +SKIP
    {'probability': array([[0.62]], dtype=float32), 'logit': ...}
    """

    def __init__(
        self,
        path: str,
        providers: list[str] | None = None,
        *,
        threads: int = 0,
        session_options: Any = None,
    ) -> None:
        import onnxruntime as ort  # deferred: onnxruntime

        if (
            isinstance(threads, bool)
            or not isinstance(threads, int)
            or (threads < 0)
        ):
            raise ValueError(
                "`threads` must be a non-negative integer. "
                f"Received: threads={threads!r}"
            )
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
            session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = path
        try:
            self.session = ort.InferenceSession(
                path,
                session_options,
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime raises its own classes
            missing = _MISSING_DATA.search(str(error))
            if missing is None:
                raise
            raise FileNotFoundError(
                f"{path}: its weights are in the external data file "
                f"{missing.group(1)}, which does not exist. Keep the data "
                f"file (`<name>.onnx{constants.ONNX_DATA_SUFFIX}`) beside "
                "the .onnx file and copy them together."
            ) from None
        # The compiled session's `run`, where this onnxruntime has it.
        self._run = getattr(getattr(self.session, "_sess", None), "run", None)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.feed = OnnxFeed.from_metadata(metadata)
        self.version = int(metadata.get(constants.ONNX_VERSION, "0"))
        self.output_names = [o.name for o in self.session.get_outputs()]
        if constants.ONNX_OUTPUTS in metadata:
            self.output_names = list(
                json.loads(metadata[constants.ONNX_OUTPUTS])
            )

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.feed.features

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.feed.features]

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: (batch_size, 1) float32}` for raw values."""
        return self.run(self.feed(raw))

    def predict_columns(
        self, columns: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """`predict` for numpy columns that already have the raw dtypes.

        The columnar fast path (`OnnxFeed.columns`): `str` object or `U`
        arrays for string features, int64 for integer vocabularies, float32
        for numeric features.
        """
        return self.run(self.feed.columns(columns))

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the graph on feeds built by `self.feed`."""
        if self._run is not None:  # `self.feed` gives every input, so the
            # Python-side name check of `InferenceSession.run` is skipped
            # (~20 us of a batch-1 request).
            outputs = self._run(
                self.output_names,
                feeds if type(feeds) is dict else dict(feeds),
                None,
            )
        else:
            outputs = self.session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, outputs, strict=True))
