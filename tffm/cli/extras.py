"""What each command needs installed, checked before it starts any work."""

import importlib.util
import sys

# Extras each command needs beyond the base install, by import name.
_EXTRAS = {
    "keras": ("keras", "tensorflow"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "tf2onnx": ("tf2onnx", "export"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "farmhash": ("pyfarmhash", "export"),
    "tensorflow_serving": ("tensorflow-serving-api", "export"),
    "matplotlib": ("matplotlib", "data"),
    "pyarrow": ("pyarrow", "data"),
    "keras_tuner": ("keras-tuner", "tune"),
    "sklearn": ("scikit-learn", "tune"),
    "grpc": ("grpcio", "serving"),
    "uvicorn": ("uvicorn", "serving"),
}
_NEEDS = {
    "demo": ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime",
             "farmhash", "tensorflow_serving", "matplotlib"),
    "train": ("keras", "tensorflow"),
    "evaluate": ("keras", "tensorflow"),
    "predict": ("keras", "tensorflow"),
    "export": ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime",
               "farmhash", "tensorflow_serving"),
    "verify": ("keras", "tensorflow", "onnxruntime", "farmhash"),
    "serve": ("onnxruntime", "farmhash", "grpc", "uvicorn"),
    "tune": ("keras", "tensorflow", "keras_tuner", "sklearn"),
    "encode": ("keras", "tensorflow"),
    "scan": ("tensorflow",),
}  # fmt: skip


class UsageError(ValueError):
    """A problem with what the user asked for (exit status 2)."""


def check_installed(command: str) -> None:
    """Names the extra to install before `command` starts any work."""
    missing = [
        _EXTRAS[module]
        for module in _NEEDS.get(command, ())
        if not _installed(module)
    ]
    if missing:
        packages = sorted({package for package, _ in missing})
        extras = ",".join(sorted({extra for _, extra in missing}))
        raise UsageError(
            f"needs {', '.join(packages)}, which is not installed: "
            f"pip install 'tffm-keras[{extras}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec (or blocked: None)
        return sys.modules.get(module) is not None
