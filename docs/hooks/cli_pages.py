"""MkDocs hook: one page per `tffm` command, rendered from its parser.

Each `cli/<command>.md` page is the command's `--help` text, taken from
`tffm.cli.build_parser()` when the site is built, so the reference cannot
drift from the command line. Parsing imports no framework, so this costs
well under a second.
"""

import argparse
import os
from typing import Any

from mkdocs.structure.files import File
from mkdocs.structure.files import Files

# The width `--help` is wrapped to on the pages.
HELP_COLUMNS = 88


def command_parsers() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Maps each command to its one-line summary and its parser."""
    from tffm.cli import build_parser  # deferred: mkdocs loads hooks first

    parser = build_parser()
    (commands,) = (
        action
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    summaries = {
        choice.dest: choice.help or "" for choice in commands._choices_actions
    }
    return {
        name: (summaries.get(name, ""), subparser)
        for name, subparser in commands.choices.items()
    }


def command_page(name: str, summary: str, parser: Any) -> str:
    """The Markdown page of one command."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    try:
        text = parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return (
        f"# tffm {name}\n\n{summary[:1].upper()}{summary[1:]}.\n\n"
        "The options below are `tffm "
        f"{name} --help`, generated from the parser when this site is "
        "built. Options shared by every command and the config file are "
        "described in the [command-line overview](../cli.md).\n\n"
        f"```text\n{text.rstrip()}\n```\n"
    )


def on_files(files: Files, config: Any) -> Files:
    """Adds the generated `cli/<command>.md` pages."""
    for name, (summary, parser) in command_parsers().items():
        content = command_page(name, summary, parser)
        files.append(File.generated(config, f"cli/{name}.md", content=content))
    return files
