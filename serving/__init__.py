"""Serving tffm models: onnxruntime predictor and TF Serving clients.

Nothing here imports TensorFlow.
"""

from serving.onnx_predictor import OnnxPredictor

__all__ = ["OnnxPredictor"]
