"""Batch scoring for `tffm predict`: any artifact, one row out per row in."""

import csv
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Scored:
    """What `write_predictions` wrote."""

    rows: int
    labelled: bool
    skipped: dict[str, Any] | None


def write_predictions(
    config: TrainConfig,
    model: Any,
    data: list[str],
    output: str,
    *,
    artifact: str | None = None,
    keep: Sequence[str] = (),
) -> Scored:
    """Scores raw data with `model` (or an exported artifact of it).

    Labels are optional: unlabelled data (Criteo's `test.txt`, a CSV
    without the label column) is what scoring is for. Rows come out in
    input order, each with its `line` (and `file`, for several input files;
    for Parquet the row number), the `keep` columns as read, the outputs
    (`probability` or `prediction`, `logit`) and the `label` when the data
    has one. The file appears only once complete.

    Args:
        config: the `TrainConfig` that says how to read `data`.
        model: the trained Keras model.
        data: files or globs.
        output: `.csv` or `.parquet` file to write.
        artifact: SavedModel directory, raw-input `.onnx` or `.keras` file
            to score with instead of `model`.
        keep: columns to copy from the input (e.g. a row id).

    Returns:
        A `Scored`.
    """
    from tffm.data import raise_row_errors
    from tffm.data.lines import resolve_files
    from tffm.training import has_label
    from tffm.training import open_source

    if not output.endswith((".csv", ".parquet")):
        raise ValueError(
            f"`--output` must end in .csv or .parquet. Received: {output!r}"
        )
    files = resolve_files(data)
    labelled = has_label(config, files)
    predictor = make_predictor(model, artifact)
    source = open_source(config, files, scoring=True, keep=tuple(keep))
    columns: dict[str, list[np.ndarray]] = {}
    with raise_row_errors():
        for features, labels in source.dataset:
            batch = {k: v.numpy() for k, v in features.items()}
            if len(files) > 1:
                columns.setdefault("file", []).append(batch["#file"])
            columns.setdefault("line", []).append(batch["#line"])
            for name in keep:
                columns.setdefault(name, []).append(batch[f"#{name}"])
            raw = {k: v for k, v in batch.items() if not k.startswith("#")}
            for name, values in predictor.predict(raw).items():
                columns.setdefault(name, []).append(np.asarray(values)[:, 0])
            if labelled:
                columns.setdefault("label", []).append(labels.numpy())
    table = {
        name: _decoded(np.concatenate(parts)) for name, parts in columns.items()
    }
    rows = len(table["line"]) if table else 0
    _write_table(table, output)
    skipped = source.log.summary() if config.lenient else None
    return Scored(rows, labelled, skipped)


def make_predictor(model: Any, artifact: str | None) -> Any:
    """The predictor of `artifact` (SavedModel, raw `.onnx`, `.keras`).

    All take raw values and return `{output: (batch_size, 1)}`; without
    `artifact`, `model` itself.
    """
    if artifact is None:
        from tffm.encoder import KerasPredictor

        return KerasPredictor(model)
    if artifact.endswith(".onnx"):
        from serving.onnx_predictor import OnnxPredictor

        return OnnxPredictor(artifact)
    if artifact.endswith(".keras"):
        from tffm.encoder import KerasPredictor
        from tffm.models import load_model

        return KerasPredictor(load_model(artifact))
    if os.path.isdir(artifact):
        from export.saved_model import SavedModelPredictor

        return SavedModelPredictor(artifact)
    raise FileNotFoundError(
        f"--artifact {artifact!r} is neither a SavedModel directory nor a "
        ".onnx or .keras file."
    )


def _decoded(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "O":  # strings from tf.data come as bytes
        return np.array(
            [v.decode("utf-8", "replace") for v in values], dtype=object
        )
    return values


def _write_table(table: dict[str, np.ndarray], output: str) -> None:
    """Writes to a temporary file beside `output`, then renames it."""
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=".tffm-", suffix=os.path.splitext(output)[1]
    )
    os.close(handle)
    try:
        if output.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(table), temporary)
        else:
            names = list(table)
            with open(temporary, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(names)
                cells = [_cells(table[n]) for n in names]
                writer.writerows(zip(*cells, strict=True))
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _cells(values: np.ndarray) -> list[Any]:
    cells: list[Any] = values.tolist()
    if values.dtype.kind == "f":
        return [f"{v:.9g}" for v in cells]
    return cells
