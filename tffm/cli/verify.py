"""`tffm verify`: exported artifacts against the Keras model."""

import argparse

from tffm import constants
from tffm.cli.extras import UsageError
from tffm.cli.flags import add_model_flag
from tffm.train.outputs import load_model


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm verify` to `commands`."""
    parser = commands.add_parser(
        "verify",
        parents=[common],
        help="compare exported artifacts with the Keras model",
        description="Run the Keras model, a SavedModel and an ONNX file on "
        "the same edge-case batches; print a per-output error table; exit "
        "1 if any output is off by more than the tolerance.",
    )
    add_model_flag(parser, export=True)
    parser.add_argument("--saved-model", help="SavedModel version directory")
    parser.add_argument("--onnx", help="raw-input .onnx file")
    atol, rtol = constants.PARITY_TOLERANCE
    parser.add_argument("--atol", type=float, default=atol)
    parser.add_argument("--rtol", type=float, default=rtol)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verifies; prints the error table, exits 1 past the tolerance."""
    from export.parity import verify_parity  # deferred: TensorFlow

    if not (args.saved_model or args.onnx):
        raise UsageError("give --saved-model and/or --onnx to verify.")
    report = verify_parity(
        load_model(args.model),
        saved_model=args.saved_model,
        onnx=args.onnx,
        tolerance=(args.atol, args.rtol),
    )
    print(report.table())
    return 0 if report.ok else 1
