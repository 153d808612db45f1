"""tffm models: FM and DeepFM (functional Keras models)."""

from tffm.models.deepfm import DeepFM
from tffm.models.fm import FM

__all__ = ["DeepFM", "FM"]
