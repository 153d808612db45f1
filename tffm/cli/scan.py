"""`tffm scan`: vocabularies and statistics of data, locally or on Beam."""

import argparse

from tffm.cli.flags import add_config_flags
from tffm.cli.flags import config_from_args
from tffm.data import beam_scan
from tffm.data.lines import resolve_files
from tffm.train.config import READING_FIELDS


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm scan` to `commands`."""
    parser = commands.add_parser(
        "scan",
        parents=[common],
        help="scan data for vocabularies and statistics (Apache Beam)",
        description="Count every categorical value and the numeric "
        "columns' moments and write OUTPUT/vocab/*.txt and "
        "OUTPUT/statistics.json, the folder `tffm train --scan OUTPUT` "
        "reads instead of scanning. Runs on Apache Beam (arguments after "
        "`--` go to its pipeline, e.g. `-- --runner=DataflowRunner`); "
        "--local scans in this process without Beam.",
    )
    parser.add_argument("--config", help="JSON or TOML config file")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--local", action="store_true", help="scan here, without Beam"
    )
    add_config_flags(parser, READING_FIELDS)
    parser.add_argument(
        "beam_args",
        nargs=argparse.REMAINDER,
        help="Beam pipeline options, after `--`",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Scans; prints where the vocabularies and statistics went."""
    config = config_from_args(args)
    files = resolve_files(config.data)
    beam_args = list(args.beam_args)
    if beam_args[:1] == ["--"]:
        beam_args = beam_args[1:]
    if args.local:
        if beam_args:
            raise ValueError(
                f"--local runs no Beam pipeline; drop {' '.join(beam_args)}"
            )
        beam_scan.scan_locally(config.layout, files, args.output)
    else:
        beam_scan.scan_with_beam(
            config.layout, files, args.output, beam_args=beam_args
        )
    print(f"Wrote {args.output}/vocab/*.txt and statistics.json")
    return 0
