"""Keras layers of tffm (all written in `keras.ops`)."""

from tffm.layers.calibration import LogitCalibration
from tffm.layers.feature_embedding import FeatureEmbedding
from tffm.layers.fm_interaction import FMInteraction
from tffm.layers.linear import LinearTerm
from tffm.layers.mlp import MLP
from tffm.layers.sparse_embedding import SparseEmbedding

__all__ = [
    "FMInteraction",
    "FeatureEmbedding",
    "LinearTerm",
    "LogitCalibration",
    "MLP",
    "SparseEmbedding",
]
