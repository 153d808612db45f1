"""tffm models: FM and DeepFM (functional Keras models)."""

from tffm.models.base import FactorizationModel
from tffm.models.base import load_model
from tffm.models.deepfm import DeepFM
from tffm.models.fm import FM
from tffm.models.log_loss import LogLoss

__all__ = ["DeepFM", "FM", "FactorizationModel", "LogLoss", "load_model"]
