"""`tffm evaluate`: a trained model's metrics on data files."""

import argparse
import json

from tffm.cli.flags import add_config_flags
from tffm.cli.flags import add_model_flag
from tffm.cli.flags import flags_given
from tffm.cli.messages import report_skipped
from tffm.data.lines import resolve_files
from tffm.train.config import SCORING_FIELDS
from tffm.train.evaluation import evaluate_files
from tffm.train.outputs import load_trained


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm evaluate` to `commands`."""
    parser = commands.add_parser(
        "evaluate",
        parents=[common],
        help="AUC / logloss (or RMSE / MAE) of a trained model on data",
        description="Evaluate a trained model (a `tffm train` folder or its "
        "model.keras) on data files, read as its config says.",
    )
    add_model_flag(parser, export=False)
    parser.add_argument("--data", nargs="+", required=True)
    add_config_flags(parser, SCORING_FIELDS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluates; prints the metrics as JSON."""
    config, model = load_trained(args.model, flags_given(args, SCORING_FIELDS))
    metrics = evaluate_files(model, config.layout, resolve_files(args.data))
    print(json.dumps(metrics, indent=2))
    if "skipped_rows" in metrics:
        report_skipped(metrics["skipped_rows"], "")
    return 0
