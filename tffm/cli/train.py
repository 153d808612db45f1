"""`tffm train`: a model from data files, with its config and metrics."""

import argparse
import json
import os
import sys

from tffm.cli.flags import add_config_flags
from tffm.cli.flags import config_from_args
from tffm.cli.messages import report_skipped


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm train` to `commands`."""
    parser = commands.add_parser(
        "train",
        parents=[common],
        help="train FM / DeepFM / LR on Criteo, libsvm, CSV or Parquet data",
        description="Train a model from data files. Flags override the "
        "--config file (JSON or TOML with the same keys, plus `columns`); "
        "the effective config is written beside the model.",
    )
    parser.add_argument("--config", help="JSON or TOML config file")
    parser.add_argument("--output", default="tffm-model", help="output folder")
    add_config_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Trains; prints the metrics and where the model went."""
    from tffm.train.pipeline import train  # deferred: Keras

    result = train(config_from_args(args), args.output)
    print(json.dumps(result.metrics, indent=2))
    print(f"Model: {os.path.join(args.output, 'model.keras')}")
    for part, summary in result.metrics.get("skipped_rows", {}).items():
        report_skipped(summary, f"of the {part} data")
    guard = result.metrics.get("linear_baseline")
    if guard is not None and guard["below"]:
        from tffm.train.linear_guard import describe  # deferred: with train

        print(f"Warning: {describe(guard)}", file=sys.stderr)
    return 0
