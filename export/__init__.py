"""Export tffm models to TF Serving (SavedModel) and ONNX, with parity checks.

Imports are lazy: `import export.onnx_feed` needs neither TensorFlow nor
Keras, so TensorFlow-free serving code can use it.
"""

import importlib
from typing import Any

__all__ = [
    "ParityError",
    "export_for_serving",
    "export_onnx",
    "export_saved_model",
    "verify_parity",
    "write_models_config",
]

_LOCATIONS = {
    "ParityError": "export.bundle",
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
