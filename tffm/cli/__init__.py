"""The `tffm` command line: demo, train, evaluate, predict, export, verify.

This package is the application: the one place that joins the `tffm`
library with `export` and `serving` (imported lazily, inside the commands
that need them). Parsing arguments imports neither Keras nor TensorFlow, so
`--help` and argument errors are instant; `tffm train`'s flags, choices and
defaults come from `tffm.config.TrainConfig`'s fields.
"""

import argparse
import dataclasses
import importlib.util
import inspect
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from tffm import constants
from tffm import tuning
from tffm.cli.demo import run_demo
from tffm.config import AUTO
from tffm.config import READING_FIELDS
from tffm.config import SCORING_FIELDS
from tffm.config import TrainConfig

# Extras each command needs beyond the base install, by import name.
_EXTRAS = {
    "keras": ("keras", "tensorflow"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "tf2onnx": ("tf2onnx", "export"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "farmhash": ("pyfarmhash", "export"),
    "tensorflow_serving": ("tensorflow-serving-api", "export"),
    "matplotlib": ("matplotlib", "data"),
    "pyarrow": ("pyarrow", "data"),
    "keras_tuner": ("keras-tuner", "tune"),
    "sklearn": ("scikit-learn", "tune"),
    "grpc": ("grpcio", "serving"),
    "uvicorn": ("uvicorn", "serving"),
}
_NEEDS = {
    "demo": ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime",
             "farmhash", "tensorflow_serving", "matplotlib"),
    "train": ("keras", "tensorflow"),
    "evaluate": ("keras", "tensorflow"),
    "predict": ("keras", "tensorflow"),
    "export": ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime",
               "farmhash", "tensorflow_serving"),
    "verify": ("keras", "tensorflow", "onnxruntime", "farmhash"),
    "serve": ("onnxruntime", "farmhash", "grpc", "uvicorn"),
    "tune": ("keras", "tensorflow", "keras_tuner", "sklearn"),
    "encode": ("keras", "tensorflow"),
}  # fmt: skip


class UsageError(ValueError):
    """A problem with what the user asked for (exit status 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `tffm` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from tffm.cli.quiet import quiet_frameworks

    try:
        _check_installed(args.command)
        if args.verbose:
            return int(args.run(args) or 0)
        with quiet_frameworks():
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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's and the other frameworks' own log lines",
    )

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="train, evaluate, export and verify on synthetic data",
        description="Generate CTR data from a planted factorization machine "
        "(no download), train DeepFM with model.fit, compare its test AUC "
        "with the planted optimum, export SavedModel + ONNX, verify parity "
        "and write a report (Markdown + PNG). Everything goes under "
        "--output, which a second run replaces.",
    )
    demo_default = _defaults(run_demo)
    demo.add_argument(
        "--output",
        default=demo_default["output"],
        help="output folder (default: %(default)s)",
    )
    for flag, name, text in (
        ("--rows", "num_rows", "rows of planted data"),
        ("--epochs", "epochs", "most training epochs"),
        ("--seed", "seed", "seed of the data and the model"),
    ):
        demo.add_argument(
            flag,
            dest=name,
            metavar="N",
            type=int,
            default=demo_default[name],
            help=f"{text} (default: %(default)s)",
        )
    demo.set_defaults(run=_run_demo)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train FM / DeepFM / LR on Criteo, libsvm, CSV or Parquet data",
        description="Train a model from data files. Flags override the "
        "--config file (JSON or TOML with the same keys, plus `columns`); "
        "the effective config is written beside the model.",
    )
    train.add_argument("--config", help="JSON or TOML config file")
    train.add_argument("--output", default="tffm-model", help="output folder")
    add_config_flags(train)
    train.set_defaults(run=_run_train)

    encode = commands.add_parser(
        "encode",
        parents=[common],
        help="encode data once to binary shards; train many times on them",
        description="Scan the data (vocabularies, statistics), encode every "
        "row to ids / values once and write them as binary shards: "
        "OUTPUT/train and OUTPUT/holdout (or OUTPUT/validation). Then "
        "`tffm train --format encoded --data OUTPUT` reads millions of rows "
        "per second per core instead of parsing text again each epoch; it "
        "takes this command's config (model, epochs, ...) as its defaults.",
    )
    encode.add_argument("--config", help="JSON or TOML config file")
    encode.add_argument("--output", required=True, help="output folder")
    encode.add_argument(
        "--overwrite", action="store_true", help="replace an existing folder"
    )
    add_config_flags(encode, READING_FIELDS + ("seed", "batch_size"))
    encode.set_defaults(run=_run_encode)

    tune = commands.add_parser(
        "tune",
        parents=[common],
        help="search hyperparameters on the holdout (KerasTuner)",
        description="Search the model's hyperparameters (embedding size, "
        "learning rate, the L2 weights, batch size, weight averaging; "
        "DeepFM: DNN widths, dropout, batch norm, kernel L2) with "
        "KerasTuner, scoring each trial on the holdout of the training "
        "data (or --validation-data): no test file is read. "
        "Writes results.md, trials.jsonl and best_config.json, which "
        "`tffm train --config` reads. Other flags and --config fix what is "
        "not searched.",
    )
    tune.add_argument("--config", help="JSON or TOML config file")
    tune.add_argument("--output", default="tffm-tune", help="output folder")
    tune_default = _defaults(tuning.tune)
    tune.add_argument(
        "--max-trials",
        type=int,
        default=tune_default["max_trials"],
        help="most trials (default: %(default)s)",
    )
    tune.add_argument(
        "--time-budget",
        type=_duration,
        help="no new trial after this long, e.g. 45m, 2h, 600 (seconds)",
    )
    tune.add_argument(
        "--algorithm",
        choices=tuning.ALGORITHMS,
        default=tune_default["algorithm"],
        help="search algorithm (default: %(default)s)",
    )
    add_config_flags(tune)
    tune.set_defaults(run=_run_tune)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="AUC / logloss (or RMSE / MAE) of a trained model on data",
        description="Evaluate a trained model (a `tffm train` folder or its "
        "model.keras) on data files, read as its config says.",
    )
    evaluate.add_argument(
        "--model", required=True, help="`tffm train` folder or its .keras"
    )
    evaluate.add_argument("--data", nargs="+", required=True)
    add_config_flags(evaluate, SCORING_FIELDS)
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="batch scoring to CSV / Parquet from .keras, SavedModel or ONNX",
        description="Score data files with a trained model (a `tffm train` "
        "folder or its model.keras), a SavedModel directory or a raw-input "
        ".onnx file; write one row per input row, in input order "
        "(probability or prediction, logit).",
    )
    predict.add_argument(
        "--model", required=True, help="`tffm train` folder or its .keras"
    )
    predict.add_argument(
        "--artifact",
        help="SavedModel dir or raw-input .onnx to score with "
        "(default: the model itself)",
    )
    predict.add_argument("--data", nargs="+", required=True)
    predict.add_argument(
        "--output", required=True, help="predictions .csv or .parquet"
    )
    predict.add_argument(
        "--keep-columns",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="input columns to copy into the output (e.g. a row id)",
    )
    add_config_flags(predict, SCORING_FIELDS)
    predict.set_defaults(run=_run_predict)

    export = commands.add_parser(
        "export",
        parents=[common],
        help="export a trained model to SavedModel + ONNX, verified",
        description="Export a trained model to a TF Serving SavedModel and "
        "ONNX (raw and ids-in), check parity on edge-case batches, and "
        "publish only if it passes.",
    )
    export.add_argument(
        "--model", required=True, help="`tffm train` folder or a .keras"
    )
    export.add_argument("--output", required=True, help="output directory")
    export.add_argument("--name", help="model name (default: file stem)")
    export.add_argument("--version", type=int, default=1)
    export.add_argument("--opset", type=int, default=constants.DEFAULT_OPSET)
    export.add_argument(
        "--no-verify", action="store_true", help="skip the parity check"
    )
    export.set_defaults(run=_run_export)

    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="compare exported artifacts with the Keras model",
        description="Run the Keras model, a SavedModel and an ONNX file on "
        "the same edge-case batches; print a per-output error table; exit "
        "1 if any output is off by more than the tolerance.",
    )
    verify.add_argument(
        "--model", required=True, help="`tffm train` folder or a .keras"
    )
    verify.add_argument("--saved-model", help="SavedModel version directory")
    verify.add_argument("--onnx", help="raw-input .onnx file")
    atol, rtol = constants.PARITY_TOLERANCE
    verify.add_argument("--atol", type=float, default=atol)
    verify.add_argument("--rtol", type=float, default=rtol)
    verify.set_defaults(run=_run_verify)

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve ONNX models over TF Serving's REST and gRPC APIs",
        description="A TF Serving-compatible model server over onnxruntime "
        "(no TensorFlow): TF Serving's flags, models.config, REST and gRPC "
        "APIs, batching, health and Prometheus metrics. See "
        "serving/README.md.",
    )
    _add_serve_arguments(serve)
    return parser


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from serving import cli as serving_cli
    except ImportError:  # without the [serving] extra: say so when run
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(run=lambda args: 2)
        return
    serving_cli.add_arguments(parser)
    parser.set_defaults(run=serving_cli.run)


def add_config_flags(
    parser: argparse.ArgumentParser, names: Sequence[str] | None = None
) -> None:
    """One flag per `TrainConfig` field: `--embedding-dim`, `--refit`, ...

    Types, choices and help come from the field; every flag defaults to
    None ("not given"), so a config file's value stands unless overridden.

    Args:
        parser: where to add the flags.
        names: the fields to add (default: every field with a flag).
    """
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if not meta.get("flag") or (
            names is not None and field.name not in names
        ):
            continue
        flag = "--" + field.name.replace("_", "-")
        base = _base_type(field.type)
        default = (
            field.default_factory()  # type: ignore[misc,operator]
            if field.default is dataclasses.MISSING
            else field.default
        )
        help_text = f"{meta['help']} (default: {_show(default)})"
        kwargs: dict[str, Any] = {"default": None, "help": help_text}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            if item is int:
                kwargs["type"] = _int_list
                kwargs["metavar"] = "N,N,..."
            else:
                kwargs["nargs"] = "+"
        else:
            kwargs["type"] = base
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
        parser.add_argument(flag, dest=field.name, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of `--config` (if any) with the flags given."""
    overrides = _flags_given(args)
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    data = overrides.get("data") or []
    encoding = os.path.join(data[0], "config.json") if len(data) == 1 else ""
    if overrides.get("format") == "encoded" and os.path.isfile(encoding):
        # `tffm encode`'s config is the base: the flags given change it.
        return TrainConfig.from_dict(
            _encoding_base(encoding, overrides), source=encoding
        )
    return TrainConfig.from_dict(overrides, source="command line")


def _encoding_base(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`tffm encode`'s config with `overrides`, re-defaulted for a new model.

    The encoding's config holds every option resolved for the model it
    was encoded with (by default the FM). Training another model on it
    (`--model deepfm`) gives that model its own defaults (learning rate,
    `ema`, ...) for each option still at the encoding model's default;
    the reading options (the vocabulary's `min_frequency` included) stay
    the encoding's, which fixed them.
    """
    from tffm.config import auto_defaults
    from tffm.config import read_config_file

    values = read_config_file(path)
    encoded_with = values.get("model")
    task = values.get("task", "binary")
    if (
        overrides.get("model", encoded_with) != encoded_with
        and task in constants.TASKS
        and encoded_with in constants.MODELS
    ):
        old = auto_defaults(task, str(encoded_with))
        for name, default in old.items():
            if name not in READING_FIELDS and values.get(name) == default:
                values.pop(name, None)
    values.update(overrides)
    return values


def _flags_given(
    args: argparse.Namespace, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The `TrainConfig` flags given on the command line (of `names`)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if (names is None or f.name in names)
        and getattr(args, f.name, None) is not None
    }


def _base_type(annotation: Any) -> Any:
    """`int | None` -> `int`; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _show(value: Any) -> str:
    if value is AUTO:
        return "by task and model, see README 'Defaults'"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _defaults(function: Any) -> dict[str, Any]:
    """`{parameter: default}` of `function`: its flags default the same."""
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 45m, 2h or 600, got {text!r}"
        ) from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def _check_installed(command: str) -> None:
    """Names the extra to install before a command starts any work."""
    missing = [
        _EXTRAS[module]
        for module in _NEEDS.get(command, ())
        if not _installed(module)
    ]
    if missing:
        packages = sorted({package for package, _ in missing})
        extras = ",".join(sorted({extra for _, extra in missing}))
        raise UsageError(
            f"needs {', '.join(packages)}, which is not installed: "
            f"pip install 'tffm-keras[{extras}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec (or blocked: None)
        return sys.modules.get(module) is not None


def _run_demo(args: argparse.Namespace) -> int:
    report = run_demo(
        args.output, num_rows=args.num_rows, epochs=args.epochs, seed=args.seed
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


def _run_train(args: argparse.Namespace) -> int:
    from tffm.training import train

    config = config_from_args(args)
    result = train(config, args.output)
    print(json.dumps(result.metrics, indent=2))
    print(f"Model: {os.path.join(args.output, 'model.keras')}")
    for part, summary in result.metrics.get("skipped_rows", {}).items():
        _report_skipped(summary, f"of the {part} data")
    return 0


def _run_encode(args: argparse.Namespace) -> int:
    from tffm.data.encoded import EncodedData
    from tffm.training import encode

    rows = encode(config_from_args(args), args.output, overwrite=args.overwrite)
    for part, count in rows.items():
        print(f"{part}: {count:,} rows")
    for part in rows:  # each part's manifest keeps what --lenient skipped
        source = EncodedData(os.path.join(args.output, part)).manifest["source"]
        if "skipped_rows" in source:
            _report_skipped(source["skipped_rows"], f"in {part}/")
    print(
        f"Train with: tffm train --format encoded --data {args.output} "
        "--output tffm-model"
    )
    return 0


def _run_tune(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = tuning.tune(
        config,
        args.output,
        max_trials=args.max_trials,
        time_budget=args.time_budget,
        algorithm=args.algorithm,
    )
    print()
    print(
        tuning.results_table(
            result.trials, tuning.search_space(config.model), result.monitor
        )
    )
    print(f"\nBest config: {result.best_config}")
    print(
        f"Train with it: tffm train --config {result.best_config} "
        "--output tffm-model"
    )
    for part, summary in (result.skipped_rows or {}).items():
        if summary is not None:
            _report_skipped(summary, f"of the {part} data")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from tffm.evaluation import evaluate_files

    config, model = load_trained(args.model, _flags_given(args, SCORING_FIELDS))
    metrics = evaluate_files(model, config, args.data)
    print(json.dumps(metrics, indent=2))
    if "skipped_rows" in metrics:
        _report_skipped(metrics["skipped_rows"], "")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from tffm.cli.predict import write_predictions

    config, model = load_trained(args.model, _flags_given(args, SCORING_FIELDS))
    scored = write_predictions(
        config,
        model,
        args.data,
        args.output,
        artifact=args.artifact,
        keep=args.keep_columns,
    )
    labels = "with labels" if scored.labelled else "no label column"
    print(f"Wrote {scored.rows:,} predictions to {args.output} ({labels}).")
    if scored.skipped is not None:
        _report_skipped(scored.skipped, "")
    return 0


def _report_skipped(summary: dict[str, Any], what: str) -> None:
    """Says, at the end of a lenient run, what it skipped and why."""
    count = summary["skipped"]
    where = f" {what}" if what else ""
    if not count:
        print(f"Lenient: no malformed rows{where}.", file=sys.stderr)
        return
    print(
        f"Lenient: skipped {count:,} malformed row"
        f"{'s' if count != 1 else ''}{where}, e.g.:",
        file=sys.stderr,
    )
    for example in summary["examples"]:
        print(f"  {example}", file=sys.stderr)


def load_trained(
    path: str, overrides: dict[str, Any] | None = None
) -> tuple[TrainConfig, Any]:
    """A `tffm train` output: its config and model, from the folder or .keras.

    Both the folder and the `model.keras` (or `checkpoints/*.keras`) inside
    it are accepted; the config is the folder's `config.json`.
    """
    if os.path.isdir(path):
        folder = path
        model_path = os.path.join(path, "model.keras")
    elif path.endswith(".keras"):
        model_path = path
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.basename(folder) == "checkpoints":
            folder = os.path.dirname(folder)
    else:
        raise FileNotFoundError(
            f"{path!r} is neither a `tffm train` folder nor a .keras file."
        )
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{folder!r} is not a `tffm train` folder (no config.json): "
            "its config says how to read data."
        )
    config = TrainConfig.from_file(config_path, **(overrides or {}))
    return config, load_model(model_path)


def load_model(path: str) -> Any:
    """A `.keras` model, or the `model.keras` of a `tffm train` folder."""
    from tffm.models import load_model as load_keras

    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if not path.endswith(".keras"):
        raise UsageError(
            f"{path!r} is not a .keras model; SavedModel and ONNX artifacts "
            "are scored with `tffm predict --artifact`."
        )
    return load_keras(path)


def _run_export(args: argparse.Namespace) -> int:
    from export.bundle import ParityError
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


def _run_verify(args: argparse.Namespace) -> int:
    from export.parity import verify_parity

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
