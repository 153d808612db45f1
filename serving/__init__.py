"""Serving tffm models without TensorFlow or Keras.

`OnnxPredictor` runs a raw-input ONNX file in onnxruntime; the spec comes
from `tffm.features` (numpy only). Nothing here imports TensorFlow, Keras
or the `export` package.
"""

from serving.onnx_predictor import OnnxPredictor

__all__ = ["OnnxPredictor"]
