"""What the first lines of a libsvm / libFM file say about its layout.

`tffm train` reads a libsvm file into a feature spec only when each row
holds one `idx:1` entry per field, in field order (the libFM exports of
Frappe and MovieLens are such files). When every sampled row holds the same
number of entries, all with value 1, the fields need not be named: they are
the positions. Labels of `-1 / +1` (libsvm's binary convention) are read as
0 / 1.
"""

import dataclasses
import gzip
import itertools
from collections.abc import Iterator
from collections.abc import Sequence

from tffm.data.lines import is_gzip

SNIFF_LINES = 10_000


@dataclasses.dataclass(frozen=True)
class LibsvmLayout:
    """What the sampled rows hold.

    Attributes:
        rows: number of rows read.
        entries: the entry count every row has, or None if counts differ.
        one_hot: whether every entry's value is 1 (and none is libFFM).
        labels: the distinct label texts, as numbers.
    """

    rows: int
    entries: int | None
    one_hot: bool
    labels: frozenset[float]

    @property
    def plus_minus_one(self) -> bool:
        """Labels are `-1 / +1` (both seen, nothing else)."""
        return self.labels == frozenset({-1.0, 1.0})


def sniff_libsvm(
    files: Sequence[str], *, max_lines: int = SNIFF_LINES
) -> LibsvmLayout:
    """Reads up to `max_lines` non-blank lines of `files`, in order.

    Malformed lines are left to the reader, which names their file:line;
    here they only make the layout irregular.
    """
    counts: set[int] = set()
    one_hot = True
    labels: set[float] = set()
    rows = 0
    for line in itertools.islice(_lines(files), max_lines):
        tokens = line.split()
        rows += 1
        counts.add(len(tokens) - 1)
        try:
            labels.add(float(tokens[0]))
        except ValueError:
            pass
        for entry in tokens[1:]:
            parts = entry.split(":")
            if len(parts) != 2 or not _is_one(parts[1]):
                one_hot = False
                break
    return LibsvmLayout(
        rows=rows,
        entries=counts.pop() if len(counts) == 1 else None,
        one_hot=one_hot and rows > 0,
        labels=frozenset(labels),
    )


def _is_one(text: str) -> bool:
    try:
        return float(text) == 1.0
    except ValueError:
        return False


def _lines(files: Sequence[str]) -> Iterator[str]:
    for path in files:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    yield line
