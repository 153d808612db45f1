"""`tffm encode`: data encoded once to binary shards, trained on many times."""

import argparse
import os

from tffm.cli.flags import add_config_flags
from tffm.cli.flags import config_from_args
from tffm.cli.messages import report_skipped
from tffm.data.encoded import EncodedData
from tffm.train.config import READING_FIELDS
from tffm.train.encode import encode


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm encode` to `commands`."""
    parser = commands.add_parser(
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
    parser.add_argument("--config", help="JSON or TOML config file")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing folder"
    )
    add_config_flags(parser, READING_FIELDS + ("seed", "batch_size"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Encodes; prints the rows of each part and how to train on them."""
    rows = encode(config_from_args(args), args.output, overwrite=args.overwrite)
    for part, count in rows.items():
        print(f"{part}: {count:,} rows")
    for part in rows:  # each part's manifest keeps what --lenient skipped
        source = EncodedData(os.path.join(args.output, part)).manifest["source"]
        if "skipped_rows" in source:
            report_skipped(source["skipped_rows"], f"in {part}/")
    print(
        f"Train with: tffm train --format encoded --data {args.output} "
        "--output tffm-model"
    )
    return 0
