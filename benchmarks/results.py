"""Writes a benchmark's section of benchmarks/RESULTS.md.

RESULTS.md holds each benchmark's latest run under its own `## <name>`
heading: `record_section` replaces that section (from its heading up to the next
`## ` heading) or, the first time, appends it at the end.
"""

import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def replace_section(content: str, name: str, text: str) -> str:
    """`content` with the section `## <name>` holding `text` instead."""
    heading = f"## {name}"
    section = f"{heading}\n\n{text.strip()}\n"
    lines = content.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if line.rstrip("\n") == heading),
        None,
    )
    if start is None:
        head = content.rstrip("\n")
        return (head + "\n\n" if head else "") + section
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
        len(lines),
    )
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def record_section(name: str, text: str, path: str = RESULTS) -> None:
    """Writes `text` as the section `## <name>` of `path` (RESULTS.md)."""
    content = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            content = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(replace_section(content, name, text))
