"""What the command line says on stderr: the library's log and run reports.

The library logs through `logging.getLogger("tffm")` and its children;
`log_to_stderr` shows those records as `tffm <command>: <message>`, the
form the command's own messages take.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def log_to_stderr(command: str) -> Iterator[None]:
    """Shows the `tffm` loggers' INFO and above on stderr while it lasts."""
    logger = logging.getLogger("tffm")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"tffm {command}: %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def report_skipped(summary: dict[str, Any], what: str) -> None:
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
