"""The `tffm` command line: demo, train, evaluate, predict, export, verify.

This module is the application entry point: it is the one place in `tffm`
that imports `export` (lazily, inside the commands that need it).
"""

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


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

    demo = commands.add_parser(
        "demo",
        help="train, evaluate, export and verify on synthetic data",
        description="Generate CTR data from a planted factorization machine "
        "(no download), train DeepFM with model.fit, compare its test AUC "
        "with the planted optimum, export SavedModel + ONNX, verify parity "
        "and write a report (Markdown + PNG). Everything goes under "
        "--output, which a second run replaces.",
    )
    demo.add_argument("--output", default="tffm-demo", help="output folder")
    demo.add_argument("--rows", type=int, default=600_000)
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)

    train = commands.add_parser(
        "train",
        help="train FM / DeepFM / LR on Criteo, libsvm, CSV or Parquet data",
        description="Train a model from data files. Flags override the "
        "--config file (JSON or TOML with the same keys); the effective "
        "config is written beside the model.",
    )
    train.add_argument("--data", nargs="+", help="training files or globs")
    train.add_argument("--format", choices=FORMAT_CHOICES)
    train.add_argument("--config", help="JSON or TOML config file")
    train.add_argument("--output", default="tffm-model", help="output folder")
    train.add_argument("--validation-data", nargs="+")
    train.add_argument(
        "--holdout-every",
        type=int,
        help="without --validation-data: every N-th line validates",
    )
    train.add_argument("--model", choices=("deepfm", "fm", "lr"))
    train.add_argument("--task", choices=("binary", "regression"))
    train.add_argument("--label", help="label column (CSV / Parquet)")
    train.add_argument("--embedding-dim", type=int)
    train.add_argument(
        "--hidden-units", type=_int_list, help="e.g. 400,400,400"
    )
    train.add_argument("--dropout", type=float)
    train.add_argument("--embeddings-l2", type=float)
    train.add_argument("--table-l2", type=float)
    train.add_argument("--kernel-l2", type=float)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--patience", type=int, help="early stopping patience")
    train.add_argument("--min-frequency", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--refit",
        action="store_true",
        default=None,
        help="after early stopping on the holdout, retrain on all rows",
    )
    train.add_argument(
        "--lenient",
        action="store_true",
        default=None,
        help="skip and count malformed rows instead of failing",
    )
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="AUC / logloss (or RMSE / MAE) of a trained model on data",
        description="Evaluate a trained model folder (from `tffm train`) on "
        "data files read as its config says.",
    )
    evaluate.add_argument("--model", required=True, help="trained folder")
    evaluate.add_argument("--data", nargs="+", required=True)
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser(
        "predict",
        help="batch scoring to CSV / Parquet from .keras, SavedModel or ONNX",
        description="Score data files with a trained folder's model.keras, "
        "a SavedModel directory or a raw-input .onnx file; write one row per "
        "input row (probability or prediction, logit).",
    )
    predict.add_argument("--model", required=True, help="trained folder")
    predict.add_argument(
        "--artifact",
        help="SavedModel dir or .onnx to score with (default: model.keras)",
    )
    predict.add_argument("--data", nargs="+", required=True)
    predict.add_argument(
        "--output", required=True, help="predictions .csv or .parquet"
    )
    predict.set_defaults(run=_run_predict)

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


FORMAT_CHOICES = ("criteo", "libsvm", "csv", "parquet")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def _run_demo(args: argparse.Namespace) -> int:
    from tffm.demo import run_demo

    report = run_demo(
        args.output, num_rows=args.rows, epochs=args.epochs, seed=args.seed
    )
    gap = report["optimum_auc"] - report["test_auc"]
    print(
        f"\nTest AUC {report['test_auc']:.4f} (planted optimum "
        f"{report['optimum_auc']:.4f}, gap {gap:.4f}); parity "
        f"{'ok' if report['parity_ok'] else 'FAILED'}; "
        f"{report['seconds']['total']} s."
    )
    print(f"Report: {os.path.join(args.output, 'report.md')}")
    return 0 if report["parity_ok"] else 1


def _train_config(args: argparse.Namespace) -> object:
    from tffm.training import TrainConfig

    overrides = {
        "data": args.data,
        "format": args.format,
        "validation_data": args.validation_data,
        "holdout_every": args.holdout_every,
        "model": args.model,
        "task": args.task,
        "label": args.label,
        "embedding_dim": args.embedding_dim,
        "hidden_units": args.hidden_units,
        "dropout": args.dropout,
        "embeddings_l2": args.embeddings_l2,
        "table_l2": args.table_l2,
        "kernel_l2": args.kernel_l2,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "patience": args.patience,
        "min_frequency": args.min_frequency,
        "seed": args.seed,
        "refit": args.refit,
        "lenient": args.lenient,
    }
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def _run_train(args: argparse.Namespace) -> int:
    from tffm.training import train

    config = _train_config(args)
    result = _data_errors(lambda: train(config, args.output))
    print(json.dumps(result.metrics, indent=2))
    print(f"Model: {os.path.join(args.output, 'model.keras')}")
    return 0


def _trained(folder: str) -> tuple[object, object]:
    from tffm.training import TrainConfig

    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{folder!r} is not a `tffm train` folder (no config.json)."
        )
    return TrainConfig.from_file(config_path), _load(
        os.path.join(folder, "model.keras")
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from tffm.encoder import FeatureEncoder
    from tffm.training import evaluate_predictions
    from tffm.training import open_source
    from tffm.training import predict_dataset

    config, model = _trained(args.model)
    encoder = FeatureEncoder(model.features)  # type: ignore[attr-defined]
    dataset = encoder.map_dataset(open_source(config, args.data).dataset)
    labels, outputs = _data_errors(lambda: predict_dataset(model, dataset))
    metrics = evaluate_predictions(labels, outputs, config.task)  # type: ignore[attr-defined]
    print(json.dumps(metrics, indent=2))
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from tffm.predict import write_predictions

    config, model = _trained(args.model)
    rows = _data_errors(
        lambda: write_predictions(
            config, model, args.data, args.output, artifact=args.artifact
        )
    )
    print(f"Wrote {rows:,} predictions to {args.output}")
    return 0


def _data_errors(fn: Callable[[], T]) -> T:
    """Runs `fn`, turning a reader's failed row check into a clean error."""
    import tensorflow as tf

    try:
        return fn()
    except tf.errors.InvalidArgumentError as error:
        match = re.search(r"assertion failed: \[(.*?)\]", str(error), re.S)
        raise ValueError(match.group(1) if match else str(error)) from None


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
