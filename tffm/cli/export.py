"""`tffm export`: a trained model as a verified SavedModel and ONNX."""

import argparse
import os
import sys

import numpy as np

from tffm import constants
from tffm.cli.flags import add_model_flag
from tffm.data.layout import DataLayout
from tffm.data.lines import raise_row_errors
from tffm.data.lines import resolve_files
from tffm.data.source import has_label
from tffm.data.source import open_source
from tffm.train.outputs import load_model
from tffm.train.outputs import load_trained


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm export` to `commands`."""
    parser = commands.add_parser(
        "export",
        parents=[common],
        help="export a trained model to SavedModel + ONNX, verified",
        description="Export a trained model to a TF Serving SavedModel and "
        "ONNX (raw and ids-in), check parity on edge-case batches, and "
        "publish only if it passes.",
    )
    add_model_flag(parser, export=True)
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--name", help="model name (default: file stem)")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--opset", type=int, default=constants.DEFAULT_OPSET)
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the parity check"
    )
    parser.add_argument(
        "--table-precision",
        choices=["float32", "float16", "int8"],
        default="float32",
        help="how the ONNX files store the embedding tables (int8: row-wise, "
        "one float32 scale per row); parity.md reports what it costs",
    )
    parser.add_argument(
        "--validation-data",
        nargs="+",
        metavar="FILE",
        help="labelled files (read as the model's config says) on which "
        "the cost report measures the AUC / logloss change",
    )
    parser.add_argument(
        "--validation-rows",
        type=int,
        default=100_000,
        help="rows of --validation-data read (default: 100,000)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Exports; prints the parity table and the artifacts' paths."""
    from export.bundle import ParityError  # deferred: TensorFlow, tf2onnx
    from export.bundle import export_for_serving

    validation = None
    if args.validation_data:
        config, model = load_trained(args.model)
        validation = read_labelled(
            config.layout, args.validation_data, args.validation_rows
        )
    else:
        model = load_model(args.model)
    stem = os.path.basename(os.path.normpath(args.model))
    name = args.name or os.path.splitext(stem)[0]
    try:
        result = export_for_serving(
            model,
            args.output,
            model_name=name,
            version=args.version,
            opset=args.opset,
            verify=not args.no_verify,
            table_precision=args.table_precision,
            validation=validation,
        )
    except ParityError as error:
        print(error, file=sys.stderr)
        return 1
    if result.report is not None:
        print(result.report.table())
    if result.cost is not None:
        print(result.cost.table())
    print(f"SavedModel:    {result.saved_model}")
    print(f"ONNX (raw):    {result.onnx}")
    print(f"ONNX (ids):    {result.onnx_ids}")
    print(f"models.config: {result.models_config}")
    return 0


def read_labelled(
    layout: DataLayout, data: list[str], rows: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The first `rows` labelled rows of `data`: `(raw features, labels)`."""
    files = resolve_files(data)
    if not has_label(layout, files):
        raise ValueError(
            f"--validation-data {data}: the files have no label column."
        )
    source = open_source(
        layout,
        files,
        batch_size=min(rows, constants.SCORING_BATCH_SIZE),
        scoring=True,
    )
    parts: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    taken = 0
    with raise_row_errors():
        for features, label in source.dataset:
            for name, values in features.items():
                if not name.startswith("#"):
                    parts.setdefault(name, []).append(values.numpy())
            labels.append(label.numpy())
            taken += len(labels[-1])
            if taken >= rows:
                break
    raw = {k: np.concatenate(v)[:rows] for k, v in parts.items()}
    return raw, np.concatenate(labels)[:rows]
