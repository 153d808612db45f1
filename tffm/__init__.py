"""tffm: factorization machines and DeepFM for Keras 3.

The feature spec (`Categorical`, `MultiCategorical`, `Numeric`) and
`tffm.metrics` need only numpy; the Keras names (layers, models, the
encoder) load on first use (PEP 562), so `import tffm.features` works on a
serving machine without Keras or TensorFlow, and `tffm --help` starts
without importing TensorFlow.

Loading a saved model needs tffm's classes registered with Keras: use
`tffm.load_model(path)`, or import Keras before tffm (then `import tffm`
registers them, as `keras.saving.load_model` expects).
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any

from tffm.features import Categorical
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import deserialize_feature
from tffm.features import serialize_feature
from tffm.moved import install as _install_moved_names

if TYPE_CHECKING:
    from tffm.encoder import FeatureEncoder
    from tffm.encoder import output_model
    from tffm.layers import MLP
    from tffm.layers import FeatureEmbedding
    from tffm.layers import FMInteraction
    from tffm.layers import LinearTerm
    from tffm.layers import SparseEmbedding
    from tffm.models import FM
    from tffm.models import DeepFM
    from tffm.models import load_model

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
    "load_model",
    "output_model",
    "serialize_feature",
]

# Public names that need Keras, and the module each lives in.
_LAZY = {
    "load_model": "tffm.models",
    "FeatureEncoder": "tffm.encoder",
    "output_model": "tffm.encoder",
    "MLP": "tffm.layers",
    "FeatureEmbedding": "tffm.layers",
    "FMInteraction": "tffm.layers",
    "LinearTerm": "tffm.layers",
    "SparseEmbedding": "tffm.layers",
    "FM": "tffm.models",
    "DeepFM": "tffm.models",
}


# Submodules reachable as attributes (`tffm.metrics.roc_auc`).
_SUBMODULES = (
    "constants",
    "features",
    "metrics",
    "optimizers",
    "synthetic",
    "testing",
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"tffm.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'tffm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


_install_moved_names()

if sys.modules.get("keras") is not None:
    # Keras is loaded already, so registering the classes costs nothing and
    # `keras.saving.load_model` finds them after a plain `import tffm`.
    importlib.import_module("tffm.models")
