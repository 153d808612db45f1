"""`tffm tune`: a hyperparameter search scored on the training holdout."""

import argparse

from tffm import constants
from tffm.cli.flags import add_config_flags
from tffm.cli.flags import config_from_args
from tffm.cli.flags import duration
from tffm.cli.messages import report_skipped


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm tune` to `commands`."""
    parser = commands.add_parser(
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
    parser.add_argument("--config", help="JSON or TOML config file")
    parser.add_argument("--output", default="tffm-tune", help="output folder")
    parser.add_argument(
        "--max-trials",
        type=int,
        default=constants.TUNE_MAX_TRIALS,
        help="most trials (default: %(default)s)",
    )
    parser.add_argument(
        "--time-budget",
        type=duration,
        help="no new trial after this long, e.g. 45m, 2h, 600 (seconds)",
    )
    parser.add_argument(
        "--algorithm",
        choices=constants.TUNE_ALGORITHMS,
        default=constants.TUNE_ALGORITHMS[0],
        help="search algorithm (default: %(default)s)",
    )
    add_config_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Searches; prints each trial, the results table and the best config."""
    from tffm.train import tuning  # deferred: Keras

    config = config_from_args(args)
    result = tuning.tune(
        config,
        args.output,
        max_trials=args.max_trials,
        time_budget=args.time_budget,
        algorithm=args.algorithm,
        report=print,
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
            report_skipped(summary, f"of the {part} data")
    return 0
