"""`tffm export`: a trained model as a verified SavedModel and ONNX."""

import argparse
import os
import sys

from tffm import constants
from tffm.cli.flags import add_model_flag
from tffm.train.outputs import load_model


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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Exports; prints the parity table and the artifacts' paths."""
    from export.bundle import ParityError  # deferred: TensorFlow, tf2onnx
    from export.bundle import export_for_serving

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
        )
    except ParityError as error:
        print(error, file=sys.stderr)
        return 1
    if result.report is not None:
        print(result.report.table())
    print(f"SavedModel:    {result.saved_model}")
    print(f"ONNX (raw):    {result.onnx}")
    print(f"ONNX (ids):    {result.onnx_ids}")
    print(f"models.config: {result.models_config}")
    return 0
