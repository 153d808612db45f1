"""A `tffm train` folder: what a run writes, and reading it back.

A run writes `model.keras`, `config.json` (the effective config),
`vocab/<feature>.txt`, `history.json`, `metrics.json` and, for binary
tasks, `calibration.png`. `load_trained` reads the folder (or a `.keras`
in it) back as its config and model.
"""

import json
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from tffm.features import Feature
from tffm.features import Lookup
from tffm.features import MultiCategorical
from tffm.train.config import TrainConfig
from tffm.train.evaluation import write_reliability_plot

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


def written_config(
    config: TrainConfig, features: Sequence[Feature]
) -> dict[str, Any]:
    """`config` as `config.json` holds it.

    A list column states the `max_len` and `combiner` its feature has, so
    that the file rebuilds the same model even where it left them to a
    default that later changes.
    """
    written = config.to_dict()
    columns = written.get("columns") or {}
    for feature in features:
        if isinstance(feature, MultiCategorical) and feature.name in columns:
            columns[feature.name].update(
                max_len=feature.max_len, combiner=feature.combiner
            )
    return written


def write_config(
    path: str, config: TrainConfig, features: Sequence[Feature]
) -> None:
    """Writes `written_config(config, features)` as JSON to `path`."""
    with open(path, "w") as f:
        json.dump(written_config(config, features), f, indent=2)


def write_outputs(
    output: str,
    config: TrainConfig,
    features: list[Feature],
    history: Mapping[str, list[float]],
    metrics: Mapping[str, Any],
) -> None:
    """Writes a run's files beside its `model.keras` (see the module)."""
    write_config(os.path.join(output, CONFIG_FILE), config, features)
    vocab_dir = os.path.join(output, "vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    for feature in features:
        if isinstance(feature, Lookup) and feature.vocabulary:
            with open(os.path.join(vocab_dir, f"{feature.name}.txt"), "w") as f:
                f.write("".join(f"{v}\n" for v in feature.vocabulary))
    with open(os.path.join(output, "history.json"), "w") as f:
        json.dump({k: [float(x) for x in v] for k, v in history.items()}, f)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(dict(metrics), f, indent=2)
    if "calibration" in metrics:
        write_reliability_plot(
            metrics["calibration"],
            os.path.join(output, "calibration.png"),
            title=f"Reliability on the {metrics['evaluated_on']}",
        )


def load_trained(
    path: str, overrides: Mapping[str, Any] | None = None
) -> tuple[TrainConfig, Any]:
    """A `tffm train` output: its config and model, from the folder or .keras.

    Both the folder and the `model.keras` (or `checkpoints/*.keras`) inside
    it are accepted; the config is the folder's `config.json`, with
    `overrides` (e.g. how test files are laid out) over it.
    """
    if os.path.isdir(path):
        folder = path
        model_path = os.path.join(path, MODEL_FILE)
    elif path.endswith(".keras"):
        model_path = path
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.basename(folder) == "checkpoints":
            folder = os.path.dirname(folder)
    else:
        raise FileNotFoundError(
            f"{path!r} is neither a `tffm train` folder nor a .keras file."
        )
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{folder!r} is not a `tffm train` folder (no config.json): "
            "its config says how to read data."
        )
    config = TrainConfig.from_file(config_path, **dict(overrides or {}))
    return config, load_model(model_path)


def load_model(path: str) -> Any:
    """A `.keras` model, or the `model.keras` of a `tffm train` folder."""
    from tffm.models import load_model as load_keras  # deferred: Keras

    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(
            f"{path!r} is not a .keras model; SavedModel and ONNX artifacts "
            "are scored with `tffm predict --artifact`."
        )
    return load_keras(path)
