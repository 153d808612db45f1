"""Streaming text lines with their file and line number, and their checks."""

import contextlib
import glob
import gzip
import os
import weakref
import zlib
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

AUTOTUNE = -1
# Every live `RowLog`, so `raise_row_errors` can find the failed row's text.
_LOGS: "weakref.WeakSet[RowLog]" = weakref.WeakSet()
# Numbers as text. `inf` parses, so that `number_problem` can say what is
# wrong with it (infinite values are rejected, NaN means missing).
NUMBER_PATTERN = (
    r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"
    r"|[-+]?(nan|NaN|NAN|inf|Inf|INF|infinity|Infinity)"
)
GZIP_MAGIC = b"\x1f\x8b"
# Gzip files already read to the end, by (path, size, mtime): each is
# checked once per process however many passes read it.
_VERIFIED: set[tuple[str, int, int]] = set()


def resolve_files(pattern: str | Sequence[str]) -> list[str]:
    """Expands globs (a pattern or a list of them); errors name the pattern."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files: list[str] = []
    for p in patterns:
        matched = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not matched:
            raise FileNotFoundError(f"No file matches {p!r}.")
        for path in matched:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"No such file: {path!r}.")
            if is_gzip(path):
                check_gzip(path)
            if _is_empty(path):
                raise ValueError(f"{path}: the file is empty.")
        files += matched
    return files


def is_gzip(path: str) -> bool:
    """Whether `path` holds gzip data (by its first bytes, not its name).

    A `.gz` file that is not gzip data is an error naming the file.
    """
    with open(path, "rb") as f:
        magic = f.read(2) == GZIP_MAGIC
    if path.endswith(".gz") and not magic and os.path.getsize(path) > 0:
        raise ValueError(
            f"{path}: not a gzip file (it ends in .gz but does not start "
            "with the gzip header); rename it or re-compress it."
        )
    return magic


def check_gzip(path: str) -> None:
    """Reads a gzip file to its end; fails, naming it, if cut or corrupt.

    TensorFlow's gzip reader stops quietly at a cut made between lines, so
    a truncated download would train on part of a file; a cut inside a line
    would surface as a misleading column-count error. Streaming zlib over
    the file (every member, with its CRC and length checks) finds both.
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    with open(path, "rb") as f:
        data = f.read(1 << 20)
        while data:
            stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            try:
                while data:
                    stream.decompress(data)
                    if stream.eof:
                        break
                    data = f.read(1 << 20)
            except zlib.error as error:
                raise ValueError(
                    f"{path}: corrupt gzip data ({error}); re-download or "
                    "re-compress the file."
                ) from None
            if not stream.eof:
                raise ValueError(
                    f"{path}: the gzip file is truncated (its compressed "
                    "data ends early); re-download or re-compress it."
                )
            # A gzip file may hold several members, one after another.
            data = stream.unused_data or f.read(1 << 20)
            if data and not data.startswith(GZIP_MAGIC[: len(data)]):
                if data.strip(b"\0"):
                    raise ValueError(
                        f"{path}: trailing bytes after the gzip data."
                    )
                break
    _VERIFIED.add(key)


def first_line(path: str) -> str:
    """The first line of a (possibly gzipped) text file, decoded as UTF-8."""
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as f:
        raw = f.readline()
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}:1: not valid UTF-8 ({error})") from None


def numbered_lines(files: Sequence[str], *, in_order: bool = False) -> Any:
    """`tf.data` of `(path, line_number, line)` over all files, streamed.

    Files are read in parallel (interleaved, deterministic order), or one
    after another with `in_order` (scoring keeps the input's row order);
    gzip is detected by the file's first bytes. No per-line Python or
    `map`: blank lines, headers and the holdout split are masked per batch
    (`line_mask`).
    """
    import tensorflow as tf  # deferred: TensorFlow

    def read(path: Any, compression: Any) -> Any:
        lines = tf.data.TextLineDataset(path, compression_type=compression)
        return tf.data.Dataset.zip(
            (
                tf.data.Dataset.from_tensors(path).repeat(),
                tf.data.Dataset.range(1, 2**62),
                lines,
            )
        )

    ds = tf.data.Dataset.from_tensor_slices(
        (list(files), ["GZIP" if is_gzip(f) else "" for f in files])
    )
    if len(files) == 1 or in_order:
        return ds.flat_map(read)
    return ds.interleave(
        read,
        cycle_length=min(len(files), 4),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )


def line_mask(
    numbers: Any,
    lines: Any,
    *,
    skip_header: bool,
    holdout_every: int | None,
    holdout: bool,
) -> Any:
    """`(batch,)` bool: lines to parse (not blank, not a header, right part).

    With `holdout_every=N`, lines whose number is a multiple of N are the
    holdout part: kept if `holdout`, dropped otherwise (a row-level split
    that streams and never changes between epochs).
    """
    import tensorflow as tf  # deferred: TensorFlow

    keep = tf.strings.length(tf.strings.strip(lines)) > 0
    if skip_header:
        keep = tf.logical_and(keep, numbers > 1)
    if holdout_every:
        in_holdout = numbers % holdout_every == 0
        keep = tf.logical_and(keep, in_holdout == holdout)
    return keep


class RowLog:
    """What a reader's row checks found, kept in TensorFlow variables.

    The checks run inside `tf.data` graphs, so they cannot raise a Python
    error or append to a list; they write here instead:
    - strict mode: the first bad row's `file:line: problem` goes to
      `error` before the assertion stops the input (`raise_row_errors`
      turns that into a `DataError` with exactly this text);
    - lenient mode: `skipped` counts dropped rows and `examples` keeps the
      first `MAX_EXAMPLES` of their `file:line: problem` texts.

    Args:
        lenient: bool. Skip and count bad rows instead of failing.
    """

    MAX_EXAMPLES = 5

    def __init__(self, lenient: bool) -> None:
        import tensorflow as tf  # deferred: TensorFlow

        self.lenient = lenient
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.examples = tf.Variable(
            [""] * self.MAX_EXAMPLES, dtype=tf.string, trainable=False
        )
        self.error = tf.Variable("", dtype=tf.string, trainable=False)
        self._section = tf.CriticalSection()
        # Readers whose checks run in Python (Parquet) log here instead.
        self.python_error = ""
        self.python_skipped: list[str] = []
        _LOGS.add(self)

    def check(self, paths: Any, line_numbers: Any, problems: Any) -> Any:
        """Fails on the first malformed row, or logs and masks bad rows.

        Args:
            paths: `(batch,)` string tensor, each row's file.
            line_numbers: `(batch,)` int64 tensor, each row's line.
            problems: `(batch,)` string tensor, `""` for good rows, else
                what is wrong with the row.

        Returns:
            `(keep, control)`: the `(batch,)` bool mask of rows to keep, and
            an op to make outputs depend on.
        """
        import tensorflow as tf  # deferred: TensorFlow

        bad = problems != ""  # (B,)
        where = tf.strings.join(
            [paths, ":", tf.strings.as_string(line_numbers), ": ", problems]
        )  # (B,)
        any_bad = tf.reduce_any(bad)
        if self.lenient:
            noted = tf.boolean_mask(where, bad)[: self.MAX_EXAMPLES]
            count = tf.reduce_sum(tf.cast(bad, tf.int64))

            def log() -> Any:
                # Batches are checked in parallel: reading `skipped`,
                # writing the free example slots and counting must be one
                # step, or two batches write the same slot.
                start = tf.minimum(self.skipped, self.MAX_EXAMPLES)
                room = tf.cast(self.MAX_EXAMPLES - start, tf.int32)
                kept = noted[:room]

                def note() -> Any:
                    index = tf.range(tf.size(kept), dtype=tf.int64) + start
                    return self.examples.scatter_nd_update(index[:, None], kept)

                with tf.control_dependencies(
                    [tf.cond(tf.size(kept) > 0, note, self.examples.read_value)]
                ):
                    return self.skipped.assign_add(count)

            control = tf.cond(
                count > 0,
                lambda: self._section.execute(log),
                self.skipped.read_value,
            )
            return tf.logical_not(bad), control
        # The first bad row's text ("" if none). Not `where[argmax(bad)]`:
        # a batch that masking emptied (a run of lines outside the holdout,
        # blank lines) has no rows, and argmax of nothing is an error.
        message = tf.strings.reduce_join(tf.boolean_mask(where, bad)[:1])

        def record() -> Any:
            return self.error.assign(message)

        with tf.control_dependencies(
            [tf.cond(any_bad, record, self.error.read_value)]
        ):
            assertion = tf.debugging.Assert(
                tf.logical_not(any_bad), [message], summarize=1
            )
        return tf.ones_like(bad), assertion

    def reject(self, problems: Sequence[str]) -> None:
        """Python-side checks: fail on the first problem, or skip and log.

        Args:
            problems: `file:row: problem` texts of the bad rows of a batch.
        """
        if not problems:
            return
        if not self.lenient:
            self.python_error = problems[0]
            raise DataError(problems[0])
        self.python_skipped.extend(problems)

    def summary(self) -> dict[str, Any]:
        """`{"skipped": n, "examples": [...]}` so far (lenient mode).

        Examples are in file and line order (batches are checked in
        parallel, so they are logged in no fixed order).
        """
        examples = [e.decode("utf-8", "replace") for e in self.examples.numpy()]
        examples = [e for e in examples if e] + self.python_skipped
        examples.sort(key=_position)
        return {
            "skipped": int(self.skipped.numpy()) + len(self.python_skipped),
            "examples": examples[: self.MAX_EXAMPLES],
        }


def _position(example: str) -> tuple[str, int]:
    """`("file", line)` of a `file:line: problem` text, for sorting."""
    path, _, rest = example.partition(":")
    line = rest.partition(":")[0].removeprefix("row ").strip()
    return path, int(line) if line.isdigit() else 0


class DataError(ValueError):
    """A malformed input row, with its `file:line: problem`."""


@contextlib.contextmanager
def raise_row_errors() -> Iterator[None]:
    """Turns a reader's failed row check into `DataError("file:line: ...")`.

    TensorFlow reports the check as an `InvalidArgumentError` whose text
    is TensorFlow's; the row's own message was written to its `RowLog`.
    """
    import tensorflow as tf  # deferred: TensorFlow

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        for log in list(_LOGS):
            message = log.python_error or log.error.numpy().decode(
                "utf-8", "replace"
            )
            if message:
                log.error.assign("")
                log.python_error = ""
                raise DataError(message) from None
        raise


def utf8_problem(lines: Any) -> Any:
    """`"not valid UTF-8"` for lines with invalid bytes, else `""`."""
    import tensorflow as tf  # deferred: TensorFlow

    clean = tf.strings.unicode_transcode(
        lines, "UTF-8", "UTF-8", errors="ignore"
    )
    return tf.where(clean != lines, "not valid UTF-8", "")


def number_problem(
    cells: Any, columns: Sequence[str], allow_empty: bool
) -> Any:
    """Per row, what is wrong with its first bad number, or `""`.

    A number must parse and be finite in float32: `inf` and values beyond
    +-3.4e38 (which float32 cannot hold) are refused, so a model never
    computes with an infinity; NaN (or an empty cell, with `allow_empty`)
    means missing.

    Args:
        cells: `(batch, columns)` string tensor.
        columns: the columns' names.
        allow_empty: bool. Whether an empty cell is allowed (missing).
    """
    import tensorflow as tf  # deferred: TensorFlow

    pattern = NUMBER_PATTERN
    if allow_empty:
        pattern = f"({pattern})?"
    text = tf.strings.strip(cells)  # (B, C)
    ok = tf.strings.regex_full_match(text, pattern)  # (B, C)
    parsed = tf.strings.to_number(
        tf.where(tf.logical_and(ok, text != ""), text, "0"), tf.float32
    )  # (B, C); overflow parses as +-inf
    infinite = tf.logical_and(ok, tf.math.is_inf(parsed))
    bad = tf.logical_or(tf.logical_not(ok), infinite)  # (B, C)
    index = tf.argmax(tf.cast(bad, tf.int32), axis=1)  # (B,)
    cell = tf.gather(cells, index, axis=1, batch_dims=1)  # (B,)
    name = tf.gather(tf.constant(list(columns)), index)  # (B,)
    why = tf.where(
        tf.gather(infinite, index, axis=1, batch_dims=1),
        ": infinite or beyond float32 (+-3.4e38): ",
        ": bad number ",
    )
    # No quotes: TensorFlow escapes them in assertion messages.
    message = tf.strings.join(["column ", name, why, cell])
    return tf.where(tf.reduce_any(bad, axis=1), message, "")


def binary_label_problem(labels: Any, column: str) -> Any:
    """Per row, a problem where a binary task's label is not 0 or 1."""
    import tensorflow as tf  # deferred: TensorFlow

    ok = tf.logical_or(labels == 0.0, labels == 1.0)
    message = tf.strings.join(
        [
            f"{column} must be 0 or 1 for a binary task, got ",
            tf.strings.as_string(labels, shortest=True),
        ]
    )
    return tf.where(ok, "", message)


def first_problem(*problems: Any) -> Any:
    """Elementwise: the first non-empty problem string."""
    import tensorflow as tf  # deferred: TensorFlow

    out = problems[-1]
    for p in reversed(problems[:-1]):
        out = tf.where(p != "", p, out)
    return out


def column_count_problem(counts: Any, expected: Sequence[int]) -> Any:
    """`"expected N columns, got M"` where a row has a wrong column count."""
    import tensorflow as tf  # deferred: TensorFlow

    ok = tf.zeros_like(counts, dtype=tf.bool)
    for n in expected:
        ok = tf.logical_or(ok, counts == n)
    want = " or ".join(str(n) for n in expected)
    text = tf.strings.join(
        [f"expected {want} columns, got ", tf.strings.as_string(counts)]
    )
    return tf.where(ok, "", text)


def _is_empty(path: str) -> bool:
    if os.path.getsize(path) == 0:
        return True
    if is_gzip(path):
        with gzip.open(path, "rb") as f:
            return f.read(1) == b""
    return False
