"""Serving tffm models without TensorFlow or Keras.

`OnnxPredictor` runs a raw-input ONNX file in onnxruntime; the spec comes
from `tffm.features` (numpy only). `tffm serve` (`serving.cli`, `python -m
serving`) serves such files with TF Serving's REST and gRPC APIs, and
`Client` calls TF Serving or `tffm serve` over either. Nothing here imports
TensorFlow, Keras or the `export` package.
"""

from serving.client import Client
from serving.errors import ServingError
from serving.onnx_predictor import OnnxPredictor

__all__ = ["Client", "OnnxPredictor", "ServingError"]
