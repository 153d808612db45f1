"""Training: from a `TrainConfig` and data files to a saved, scored model.

One concept per module, imported one way:

- `config` (`TrainConfig`, the one source of the options), `defaults` (what
  `AUTO` options become) and `options` (the parts each step takes);
- `inputs` (the feature spec and datasets), `build` (features and the
  compiled model), `fit` (one fit, resumable), `callbacks`, `resume`,
  `distribute` (where fits run), `precise_bn`, `calibration`, `evaluation`;
- `pipeline` (`train`), `outputs` (the `tffm train` folder), `encode`
  (`tffm encode`) and `tuning` (`tffm tune`) on top.

`TrainConfig` and `AUTO` import no framework (the command line parses with
them); the other names load Keras on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from tffm.train.config import TrainConfig
from tffm.train.defaults import AUTO
from tffm.train.options import FitOptions
from tffm.train.options import ModelOptions

if TYPE_CHECKING:
    from tffm.train.build import build_features
    from tffm.train.build import build_model
    from tffm.train.encode import encode
    from tffm.train.evaluation import evaluate_files
    from tffm.train.outputs import load_model
    from tffm.train.outputs import load_trained
    from tffm.train.pipeline import TrainResult
    from tffm.train.pipeline import train
    from tffm.train.tuning import tune

__all__ = [
    "AUTO",
    "FitOptions",
    "ModelOptions",
    "TrainConfig",
    "TrainResult",
    "build_features",
    "build_model",
    "encode",
    "evaluate_files",
    "load_model",
    "load_trained",
    "train",
    "tune",
]

# Public names that need Keras, and the module each lives in.
_LAZY = {
    "TrainResult": "tffm.train.pipeline",
    "train": "tffm.train.pipeline",
    "build_features": "tffm.train.build",
    "build_model": "tffm.train.build",
    "encode": "tffm.train.encode",
    "evaluate_files": "tffm.train.evaluation",
    "load_model": "tffm.train.outputs",
    "load_trained": "tffm.train.outputs",
    "tune": "tffm.train.tuning",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'tffm.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
