"""Scoring a model on labelled data: the one evaluation path.

`tffm train` (validation metrics), `tffm evaluate`, `tffm demo` and the
benchmarks all call `evaluate_files` (or `evaluate_dataset`), so a metric
means the same thing everywhere.
"""

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from tffm import constants
from tffm import metrics
from tffm.data.layout import DataLayout
from tffm.data.lines import raise_row_errors
from tffm.data.source import has_label
from tffm.data.source import open_source

_METRICS: dict[str, dict[str, Callable[[Any, Any], float]]] = {
    "binary": {"auc": metrics.roc_auc, "logloss": metrics.log_loss},
    "regression": {"rmse": metrics.rmse, "mae": metrics.mae},
}


def evaluate_files(
    model: Any,
    layout: DataLayout,
    files: list[str],
    *,
    batch_size: int = constants.SCORING_BATCH_SIZE,
) -> dict[str, Any]:
    """Metrics of `model` on raw data `files`, read as `layout` says.

    With `layout.lenient`, `skipped_rows` says how many malformed rows were
    left out, with examples of why.
    """
    from tffm.encoder import FeatureEncoder  # deferred: Keras

    source = open_source(layout, files, batch_size=batch_size, scoring=True)
    if not has_label(layout, files):
        raise ValueError(
            f"{files[0]}: no label column {layout.label!r} to evaluate "
            "against; `tffm predict` scores unlabelled data."
        )
    # The encoder reads the spec's features ("#file", "#line" pass by).
    dataset = FeatureEncoder(model.features).map_dataset(source.dataset)
    metrics: dict[str, Any] = dict(
        evaluate_dataset(model, dataset, layout.task)
    )
    if layout.lenient and source.log is not None:
        metrics["skipped_rows"] = source.log.summary()
    return metrics


def evaluate_dataset(model: Any, dataset: Any, task: str) -> dict[str, Any]:
    """Metrics of `model` on an encoded `(features, label)` dataset."""
    labels, predictions = predict_dataset(model, dataset)
    return evaluate_predictions(labels, predictions, task)


def predict_dataset(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and model outputs over an encoded `(features, label)` dataset."""
    import keras  # deferred: Keras

    labels, outputs = [], []
    with raise_row_errors():
        for features, y in dataset:
            out = model(features, training=False)  # (B, 1)
            outputs.append(keras.ops.convert_to_numpy(out)[:, 0])
            labels.append(np.asarray(y))
    return np.concatenate(labels), np.concatenate(outputs)


def evaluate_predictions(
    labels: np.ndarray, predictions: np.ndarray, task: str
) -> dict[str, Any]:
    """AUC / logloss (binary) or RMSE / MAE (regression), with bootstrap std.

    Binary tasks also get the expected calibration error (`ece`) and the
    reliability table (`calibration`, `tffm.metrics.calibration_table`).
    """
    out: dict[str, Any] = {"rows": float(len(labels))}
    for name, fn in _METRICS[task].items():
        out[name] = fn(labels, predictions)
        out[f"{name}_std"] = metrics.bootstrap_std(fn, labels, predictions)
    if task == "binary":
        out["ece"] = metrics.expected_calibration_error(labels, predictions)
        out["calibration"] = metrics.calibration_table(labels, predictions)
    return out


def write_reliability_plot(
    table: list[dict[str, float]], path: str, *, title: str = ""
) -> str | None:
    """Draws a reliability diagram (observed rate vs mean prediction).

    Args:
        table: `tffm.metrics.calibration_table`'s bins.
        path: str. The PNG to write.
        title: str. The plot's title.

    Returns:
        `path`, or None when matplotlib (the `[data]` extra) is absent.
    """
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib  # optional: the `[data]` extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: the [data] extra

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.plot(
        [b["mean_probability"] for b in table],
        [b["observed_rate"] for b in table],
        "o-",
        label="model",
    )
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed click rate",
        title=title or "Reliability",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
