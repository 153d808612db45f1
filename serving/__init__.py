"""Serving tffm models: an onnxruntime predictor (no TensorFlow) and clients
for TF Serving's REST API."""

from serving.onnx_predictor import OnnxPredictor

__all__ = ["OnnxPredictor"]
