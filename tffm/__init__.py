"""tffm: factorization machines and DeepFM for Keras 3."""

from tffm import metrics
from tffm import synthetic
from tffm.encoder import FeatureEncoder
from tffm.encoder import output_model
from tffm.features import Categorical
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import deserialize_feature
from tffm.features import serialize_feature
from tffm.layers import MLP
from tffm.layers import FeatureEmbedding
from tffm.layers import FMInteraction
from tffm.layers import LinearTerm
from tffm.layers import SparseEmbedding
from tffm.models import FM
from tffm.models import DeepFM

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Categorical",
    "DeepFM",
    "FM",
    "FMInteraction",
    "FeatureEmbedding",
    "FeatureEncoder",
    "LinearTerm",
    "MultiCategorical",
    "Numeric",
    "SparseEmbedding",
    "deserialize_feature",
    "output_model",
    "serialize_feature",
]
