"""The `tffm` command line: demo, train, evaluate, predict, export, verify.

This module is the application entry point: it is the one place in `tffm`
that imports `export` (lazily, inside the commands that need it).
"""

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `tffm` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"tffm {args.command}: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tffm",
        description="Factorization machines and DeepFM for Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser(
        "export",
        help="export a .keras model to SavedModel + ONNX, verified",
        description="Export a trained .keras model to a TF Serving "
        "SavedModel and ONNX (raw and ids-in), check parity on edge-case "
        "batches, and publish only if it passes.",
    )
    export.add_argument("--model", required=True, help="trained .keras file")
    export.add_argument("--output", required=True, help="output directory")
    export.add_argument("--name", help="model name (default: file stem)")
    export.add_argument("--version", type=int, default=1)
    export.add_argument("--opset", type=int, default=17)
    export.add_argument(
        "--no-verify", action="store_true", help="skip the parity check"
    )
    export.set_defaults(run=_run_export)

    verify = commands.add_parser(
        "verify",
        help="compare exported artifacts with the Keras model",
        description="Run the Keras model, a SavedModel and an ONNX file on "
        "the same edge-case batches; print a per-output error table; exit "
        "1 if any output is off by more than the tolerance.",
    )
    verify.add_argument("--model", required=True, help="trained .keras file")
    verify.add_argument("--saved-model", help="SavedModel version directory")
    verify.add_argument("--onnx", help="raw-input .onnx file")
    verify.add_argument("--atol", type=float, default=1e-5)
    verify.add_argument("--rtol", type=float, default=1e-5)
    verify.set_defaults(run=_run_verify)
    return parser


def _load(path: str) -> object:
    import keras

    import tffm  # noqa: F401  (registers the serializable classes)

    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    return keras.saving.load_model(path)


def _run_export(args: argparse.Namespace) -> int:
    from export.bundle import ParityError
    from export.bundle import export_for_serving

    model = _load(args.model)
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
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


def _run_verify(args: argparse.Namespace) -> int:
    from export.parity import verify_parity

    if not (args.saved_model or args.onnx):
        raise ValueError("give --saved-model and/or --onnx to verify.")
    report = verify_parity(
        _load(args.model),
        saved_model=args.saved_model,
        onnx=args.onnx,
        tolerance=(args.atol, args.rtol),
    )
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
