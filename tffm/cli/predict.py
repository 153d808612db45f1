"""`tffm predict`: batch scoring with any artifact, one row out per row in."""

import argparse
import csv
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm import constants
from tffm.cli.flags import add_config_flags
from tffm.cli.flags import add_model_flag
from tffm.cli.flags import flags_given
from tffm.cli.messages import report_skipped
from tffm.data.layout import DataLayout
from tffm.data.lines import raise_row_errors
from tffm.data.lines import resolve_files
from tffm.data.source import has_label
from tffm.data.source import open_source
from tffm.train.config import SCORING_FIELDS
from tffm.train.outputs import load_trained


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm predict` to `commands`."""
    parser = commands.add_parser(
        "predict",
        parents=[common],
        help="batch scoring to CSV / Parquet from .keras, SavedModel or ONNX",
        description="Score data files with a trained model (a `tffm train` "
        "folder or its model.keras), a SavedModel directory or a raw-input "
        ".onnx file; write one row per input row, in input order "
        "(probability or prediction, logit).",
    )
    add_model_flag(parser, export=False)
    parser.add_argument(
        "--artifact",
        help="SavedModel dir or raw-input .onnx to score with "
        "(default: the model itself)",
    )
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument(
        "--output", required=True, help="predictions .csv or .parquet"
    )
    parser.add_argument(
        "--keep-columns",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="input columns to copy into the output (e.g. a row id)",
    )
    add_config_flags(parser, SCORING_FIELDS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Scores; says how many rows it wrote."""
    config, model = load_trained(args.model, flags_given(args, SCORING_FIELDS))
    scored = write_predictions(
        config.layout,
        model,
        args.data,
        args.output,
        artifact=args.artifact,
        keep=args.keep_columns,
    )
    labels = "with labels" if scored.labelled else "no label column"
    print(f"Wrote {scored.rows:,} predictions to {args.output} ({labels}).")
    if scored.skipped is not None:
        report_skipped(scored.skipped, "")
    return 0


@dataclasses.dataclass(frozen=True)
class Scored:
    """What `write_predictions` wrote."""

    rows: int
    labelled: bool
    skipped: dict[str, Any] | None


def write_predictions(
    layout: DataLayout,
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
        layout: how to read `data` (the trained model's `config.layout`).
        model: the trained Keras model.
        data: files or globs.
        output: `.csv` or `.parquet` file to write.
        artifact: SavedModel directory, raw-input `.onnx` or `.keras` file
            to score with instead of `model`.
        keep: columns to copy from the input (e.g. a row id).

    Returns:
        A `Scored`.
    """
    if not output.endswith((".csv", ".parquet")):
        raise ValueError(
            f"`--output` must end in .csv or .parquet. Received: {output!r}"
        )
    files = resolve_files(data)
    labelled = has_label(layout, files)
    predictor = make_predictor(model, artifact)
    source = open_source(
        layout,
        files,
        batch_size=constants.SCORING_BATCH_SIZE,
        scoring=True,
        keep=tuple(keep),
    )
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
    skipped = (
        source.log.summary()
        if layout.lenient and source.log is not None
        else None
    )
    return Scored(rows, labelled, skipped)


def make_predictor(model: Any, artifact: str | None) -> Any:
    """The predictor of `artifact` (SavedModel, raw `.onnx`, `.keras`).

    All take raw values and return `{output: (batch_size, 1)}`; without
    `artifact`, `model` itself.
    """
    if artifact is None:
        from tffm.encoder import KerasPredictor  # deferred: Keras

        return KerasPredictor(model)
    if artifact.endswith(".onnx"):
        from serving.onnx_predictor import OnnxPredictor  # deferred: ORT

        return OnnxPredictor(artifact)
    if artifact.endswith(".keras"):
        from tffm.encoder import KerasPredictor  # deferred: Keras
        from tffm.models import load_model

        return KerasPredictor(load_model(artifact))
    if os.path.isdir(artifact):
        from export.saved_model import SavedModelPredictor  # deferred: TF

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
            import pyarrow as pa  # optional: the [data] extra
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
