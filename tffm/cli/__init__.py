"""The `tffm` command line: one module per command.

This package is the application: the one place that joins the `tffm`
library with `export` and `serving` (imported inside the commands that need
them). Parsing arguments imports neither Keras nor TensorFlow, so `--help`
and argument errors are instant; the training flags, choices and defaults
come from `tffm.train.TrainConfig`'s fields (`tffm.cli.flags`). The
library's log shows on stderr as `tffm <command>: <message>`.
"""

import argparse
import sys
from collections.abc import Sequence

from tffm import __version__
from tffm.cli import demo
from tffm.cli import encode
from tffm.cli import evaluate
from tffm.cli import export
from tffm.cli import predict
from tffm.cli import scan
from tffm.cli import serve
from tffm.cli import train
from tffm.cli import tune
from tffm.cli import verify
from tffm.cli.extras import UsageError
from tffm.cli.extras import check_installed
from tffm.cli.flags import add_common_flags
from tffm.cli.messages import log_to_stderr
from tffm.cli.quiet import quiet_frameworks

__all__ = ["UsageError", "build_parser", "main"]

# In `tffm --help`'s order.
_COMMANDS = (demo, train, encode, scan, tune, evaluate, predict, export,
             verify, serve)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `tffm` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        check_installed(args.command)
        with log_to_stderr(args.command):
            if args.verbose:
                return int(args.run(args) or 0)
            with quiet_frameworks():
                return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"tffm {args.command}: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The `tffm` parser, every command's subparser included."""
    parser = argparse.ArgumentParser(
        prog="tffm",
        description="Factorization machines and DeepFM for Keras 3.",
    )
    parser.add_argument(
        "--version", action="version", version=f"tffm {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    add_common_flags(common)
    for command in _COMMANDS:
        command.add_parser(commands, common)
    return parser
