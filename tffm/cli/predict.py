"""Batch scoring for `tffm predict`: any artifact, one row out per row in."""

import os
from typing import Any

import numpy as np

from tffm.config import TrainConfig


def write_predictions(
    config: TrainConfig,
    model: Any,
    data: list[str],
    output: str,
    *,
    artifact: str | None = None,
) -> int:
    """Scores raw data with `model` (or an exported artifact of it).

    Args:
        config: the `TrainConfig` that says how to read `data`.
        model: the trained Keras model.
        data: files or globs.
        output: `.csv` or `.parquet` file to write.
        artifact: SavedModel directory or raw-input `.onnx` file to score
            with instead of the Keras model.

    Returns:
        The number of rows written.
    """
    from tffm.data import raise_row_errors
    from tffm.training import open_source

    if not output.endswith((".csv", ".parquet")):
        raise ValueError(
            f"`--output` must end in .csv or .parquet. Received: {output!r}"
        )
    predictor = make_predictor(model, artifact)
    columns: dict[str, list[np.ndarray]] = {}
    with raise_row_errors():
        for features, labels in open_source(config, data).dataset:
            raw = {k: v.numpy() for k, v in features.items()}
            for name, values in predictor.predict(raw).items():
                columns.setdefault(name, []).append(np.asarray(values)[:, 0])
            columns.setdefault("label", []).append(labels.numpy())
    table = {k: np.concatenate(v) for k, v in columns.items()}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if output.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table), output)
    else:
        names = list(table)
        with open(output, "w") as f:
            f.write(",".join(names) + "\n")
            for row in zip(*(table[n] for n in names), strict=True):
                f.write(",".join(f"{v:.9g}" for v in row) + "\n")
    return len(table["label"])


def make_predictor(model: Any, artifact: str | None) -> Any:
    """The predictor of `artifact` (SavedModel dir, raw `.onnx`) or `model`.

    All three take raw values and return `{output: (batch_size, 1)}`.
    """
    if artifact is None:
        from tffm.encoder import KerasPredictor

        return KerasPredictor(model)
    if artifact.endswith(".onnx"):
        from serving.onnx_predictor import OnnxPredictor

        return OnnxPredictor(artifact)
    if os.path.isdir(artifact):
        from export.saved_model import SavedModelPredictor

        return SavedModelPredictor(artifact)
    raise FileNotFoundError(
        f"--artifact {artifact!r} is neither a SavedModel directory nor a "
        ".onnx file."
    )
