"""Export tffm models to TF Serving (SavedModel) and ONNX, with parity checks.

Builds on the `tffm` library (TensorFlow backend) and runs each artifact in
parity checks through the predictor that serves it (`serving.OnnxPredictor`,
`SavedModelPredictor`). Imports are lazy: TensorFlow, tf2onnx and
onnxruntime load when a function needs them.
"""

import importlib
from typing import Any

__all__ = [
    "ParityError",
    "SavedModelPredictor",
    "export_for_serving",
    "export_onnx",
    "export_saved_model",
    "verify_parity",
    "write_models_config",
]

_LOCATIONS = {
    "ParityError": "export.bundle",
    "SavedModelPredictor": "export.saved_model",
    "export_for_serving": "export.bundle",
    "export_onnx": "export.onnx",
    "export_saved_model": "export.saved_model",
    "write_models_config": "export.saved_model",
    "verify_parity": "export.parity",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
