"""Streaming `tf.data` readers: Criteo TSV, CSV, libsvm / libFM / libFFM.

Every reader streams (files are never loaded whole), reads gzip and globs,
parses whole batches with TensorFlow string ops in parallel, and checks each
row: a malformed row fails with `file:line: what is wrong`, or, with
`lenient=True`, is skipped and counted in `Source.skipped`.
"""

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from tffm.data import lines as L

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
KINDS = ("numeric", "categorical", "integer", "list")


@dataclasses.dataclass
class Source:
    """A streaming dataset of `(features, label)` batches.

    Attributes:
        dataset: `tf.data.Dataset` yielding `(dict of tensors, label)`.
        skipped: `tf.Variable` (int64) counting malformed rows skipped so
            far (lenient mode), else None.
        files: the files read.
    """

    dataset: Any
    skipped: Any
    files: list[str]


def read_criteo(
    pattern: str | Sequence[str],
    *,
    batch_size: int = 1024,
    has_label: bool = True,
    **options: Any,
) -> Source:
    """Reads Criteo's TSV: label, I1..I13 (counts), C1..C26 (hex strings).

    Empty fields are missing: NaN for `I*`, `""` for `C*`. Without a label
    column (`has_label=False`, as Kaggle's test file) labels are 0.

    Args:
        pattern: file path, glob, or list of them (`.gz` read as gzip).
        batch_size: int. Rows per batch.
        has_label: bool. Whether the first column is the label.
        **options: `shuffle_buffer`, `seed`, `repeat`, `lenient`,
            `holdout_every`, `holdout` (see `read_csv`).

    Returns:
        A `Source` with features `I1..I13` (float32) and `C1..C26` (string).
    """
    names = (("label",) if has_label else ()) + CRITEO_NUMERIC
    names += CRITEO_CATEGORICAL
    kinds = {n: "numeric" for n in CRITEO_NUMERIC}
    kinds.update({n: "categorical" for n in CRITEO_CATEGORICAL})
    return _delimited(
        pattern,
        columns=names,
        kinds=kinds,
        label="label" if has_label else None,
        delimiter="\t",
        header=False,
        quoted=False,
        batch_size=batch_size,
        **options,
    )


def read_csv(
    pattern: str | Sequence[str],
    *,
    kinds: Mapping[str, str],
    label: str | None,
    batch_size: int = 1024,
    delimiter: str = ",",
    list_separator: str = "|",
    max_len: Mapping[str, int] | None = None,
    column_names: Sequence[str] | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    lenient: bool = False,
    holdout_every: int | None = None,
    holdout: bool = False,
) -> Source:
    """Reads delimited text with a header line (or `column_names`).

    Only the columns named in `kinds` (and `label`) are parsed; others are
    ignored. Fields are split on `delimiter`; double-quoted fields may hold
    the delimiter (`""` is a literal quote), as in RFC 4180.

    Args:
        pattern: file path, glob, or list of them (`.gz` read as gzip).
        kinds: dict `{column: kind}`, kind one of `"numeric"` (float32, empty
            = NaN), `"categorical"` (string, empty = missing), `"integer"`
            (int64, empty = -1), `"list"` (strings separated by
            `list_separator`, padded with `""` to `max_len[column]`).
        label: str. Label column (float32), or None for unlabelled data.
        batch_size: int. Rows per batch.
        delimiter: str. Field separator.
        list_separator: str. Separator inside `"list"` cells.
        max_len: dict `{column: int}` for `"list"` columns (default 16).
        column_names: list of str. Names of the columns of files that have
            no header line (then no line is skipped).
        shuffle_buffer: int. Rows in the shuffle buffer (0: no shuffle).
        seed: int. Shuffle seed.
        repeat: bool. Repeat forever (for `steps_per_epoch` training).
        lenient: bool. Skip and count malformed rows instead of failing.
        holdout_every: int. Split rows by line number: every N-th line is
            the holdout (validation) part.
        holdout: bool. Read the holdout part (True) or the rest (False).

    Returns:
        A `Source`.
    """
    files = L.resolve_files(pattern)
    has_header = column_names is None
    header = (
        [h.strip().strip('"') for h in L.first_line(files[0]).split(delimiter)]
        if has_header
        else list(column_names or ())
    )
    for path in files[1:] if has_header else []:
        other = [
            h.strip().strip('"') for h in L.first_line(path).split(delimiter)
        ]
        if other != header:
            raise ValueError(
                f"{path}:1: header differs from {files[0]}'s: {other}"
            )
    for name in list(kinds) + ([label] if label else []):
        if name not in header:
            raise ValueError(
                f"{files[0]}:1: no column {name!r} for feature {name!r} in "
                f"the header {header}"
            )
    return _delimited(
        files,
        columns=tuple(header),
        kinds=kinds,
        label=label,
        delimiter=delimiter,
        header=has_header,
        batch_size=batch_size,
        list_separator=list_separator,
        max_len=max_len,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        lenient=lenient,
        holdout_every=holdout_every,
        holdout=holdout,
    )


def read_libsvm(
    pattern: str | Sequence[str],
    *,
    batch_size: int = 1024,
    num_features: int | None = None,
    max_nonzeros: int | None = None,
    fields: Sequence[str] | None = None,
    ffm: bool = False,
    binary_labels: bool = False,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    lenient: bool = False,
    holdout_every: int | None = None,
    holdout: bool = False,
) -> Source:
    """Reads libsvm / libFM (`label idx:val ...`) and libFFM (`field:idx:val`).

    Default output is the padded sparse design matrix that
    `tffm.FM(num_features=...)` takes: `indices` `(batch, K)` int32 padded
    with -1 and `values` `(batch, K)` float32 (plus `fields` for libFFM
    rows), `K = max_nonzeros` or the batch's longest row.

    With `fields=[name, ...]`, each row must hold exactly one `idx:1` entry
    per field, in order (as the libFM exports of Frappe and MovieLens do);
    the output is `{name: idx}` (int64), ready for `Categorical` features
    with an integer vocabulary.

    Args:
        pattern: file path, glob, or list (`.gz` read as gzip).
        batch_size: int. Rows per batch.
        num_features: int. If given, indices must be below it.
        max_nonzeros: int. Pad / cut rows to this many entries.
        fields: list of str. Field names, one entry per field per row.
        ffm: bool. Also output `fields` `(batch, K)` int32 (libFFM field
            ids, -1 padding).
        binary_labels: bool. Map labels `> 0` to 1 and others to 0 (for
            `-1/+1` or `0/1` files).
        shuffle_buffer: int. Rows in the shuffle buffer (0: no shuffle).
        seed: int. Shuffle seed.
        repeat: bool. Repeat forever.
        lenient: bool. Skip and count malformed rows instead of failing.
        holdout_every: int. As in `read_csv`.
        holdout: bool. As in `read_csv`.

    Returns:
        A `Source`.
    """
    import tensorflow as tf

    files = L.resolve_files(pattern)
    skipped = (
        tf.Variable(0, dtype=tf.int64, trainable=False) if lenient else None
    )

    def parse(paths: Any, numbers: Any, lines: Any) -> Any:
        tokens = tf.strings.split(tf.strings.strip(lines))  # (B, None)
        # Lines are non-blank, so each has a first token: the label.
        label_text = tokens.to_tensor(default_value="", shape=[None, 1])[:, 0]
        entries = tokens[:, 1:]  # (B, None)
        parts = tf.strings.split(entries, ":")  # (B, None, None)
        arity = parts.row_lengths(axis=2)  # (B, None)
        is_ffm = arity == 3
        arity_ok = tf.reduce_all(tf.logical_or(arity == 2, arity == 3), axis=1)
        dense_parts = parts.to_tensor(default_value="0", shape=[None, None, 3])
        # For idx:val rows the value sits in column 1; for field:idx:val in 2.
        idx_text = tf.where(
            is_ffm.to_tensor(), dense_parts[:, :, 1], dense_parts[:, :, 0]
        )
        val_text = tf.where(
            is_ffm.to_tensor(), dense_parts[:, :, 2], dense_parts[:, :, 1]
        )
        field_text = tf.where(is_ffm.to_tensor(), dense_parts[:, :, 0], "0")
        present = tf.sequence_mask(entries.row_lengths())  # (B, K)
        int_ok = tf.strings.regex_full_match(idx_text, r"[0-9]+")
        int_ok = tf.logical_and(
            int_ok, tf.strings.regex_full_match(field_text, r"[0-9]+")
        )
        num_ok = tf.strings.regex_full_match(
            val_text, r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"
        )
        cell_ok = tf.reduce_all(
            tf.logical_or(
                tf.logical_not(present), tf.logical_and(int_ok, num_ok)
            ),
            axis=1,
        )
        problems = L.first_problem(
            L.utf8_problem(lines),
            L.number_problem(label_text[:, None], ["label"], allow_empty=False),
            tf.where(arity_ok, "", "entries must be idx:val or field:idx:val"),
            tf.where(cell_ok, "", "bad index or value in an idx:val entry"),
        )
        safe = problems != ""
        idx = tf.strings.to_number(
            tf.where(safe[:, None], "0", idx_text), tf.int64
        )
        if num_features is not None:
            too_big = tf.reduce_any(
                tf.logical_and(present, idx >= num_features), axis=1
            )
            problems = L.first_problem(
                problems,
                tf.where(too_big, f"index >= num_features={num_features}", ""),
            )
        if fields is not None:
            count_ok = entries.row_lengths() == len(fields)
            problems = L.first_problem(
                problems,
                tf.where(
                    count_ok,
                    "",
                    f"expected {len(fields)} idx:val entries (fields "
                    f"{list(fields)})",
                ),
            )
        keep, control = L.check_rows(
            paths, numbers, problems, lenient=lenient, skipped=skipped
        )
        bad = problems != ""
        with tf.control_dependencies([control]):
            label = tf.strings.to_number(
                tf.where(bad, "0", label_text), tf.float32
            )
            if binary_labels:
                label = tf.cast(label > 0, tf.float32)
            values = tf.strings.to_number(
                tf.where(bad[:, None], "0", val_text), tf.float32
            )
            if fields is not None:
                width = len(fields)
                ids = tf.pad(idx, [[0, 0], [0, width]])[:, :width]
                features = {name: ids[:, j] for j, name in enumerate(fields)}
            else:
                indices = tf.where(present, tf.cast(idx, tf.int32), -1)
                values = tf.where(present, values, 0.0)
                features = {"indices": indices, "values": values}
                if ffm:
                    field_ids = tf.strings.to_number(
                        tf.where(bad[:, None], "0", field_text), tf.int32
                    )
                    features["fields"] = tf.where(present, field_ids, -1)
                if max_nonzeros is not None:
                    features = {
                        k: _fix_width(
                            v, max_nonzeros, -1 if k != "values" else 0
                        )
                        for k, v in features.items()
                    }
        return _mask(features, label, keep, lenient)

    return _pipeline(
        files,
        parse,
        batch_size=batch_size,
        skip_header=False,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        skipped=skipped,
        lenient=lenient,
        holdout_every=holdout_every,
        holdout=holdout,
    )


def _delimited(
    pattern: str | Sequence[str],
    *,
    columns: Sequence[str],
    kinds: Mapping[str, str],
    label: str | None,
    delimiter: str,
    header: bool,
    batch_size: int,
    quoted: bool = True,
    list_separator: str = "|",
    max_len: Mapping[str, int] | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    lenient: bool = False,
    holdout_every: int | None = None,
    holdout: bool = False,
) -> Source:
    import tensorflow as tf

    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(
                f"Feature {name!r}: unknown kind {kind!r}. Expected one of "
                f"{KINDS}."
            )
    files = L.resolve_files(pattern)
    skipped = (
        tf.Variable(0, dtype=tf.int64, trainable=False) if lenient else None
    )
    position = {name: j for j, name in enumerate(columns)}
    numeric = [n for n, k in kinds.items() if k in ("numeric", "integer")]
    max_len = dict(max_len or {})

    def parse(paths: Any, numbers: Any, lines: Any) -> Any:
        lines = tf.strings.regex_replace(lines, "\r$", "")
        if quoted:
            # Count fields with quoted sections (which may hold the
            # delimiter) collapsed; a quote left over is unbalanced.
            flat = tf.strings.regex_replace(lines, r'"(?:[^"]|"")*"', "Q")
            quote_problem = tf.where(
                tf.strings.regex_full_match(flat, '[^"]*'),
                "",
                "unbalanced double quote",
            )
        else:
            flat, quote_problem = lines, tf.zeros_like(lines)
        counts = tf.strings.split(flat, delimiter).row_lengths()  # (B,)
        structure = L.first_problem(
            L.utf8_problem(lines),
            quote_problem,
            L.column_count_problem(counts, [len(columns)]),
        )
        # Rows that cannot be split are replaced by an empty row, so the
        # CSV op never fails on them; the check below reports them.
        safe = tf.where(structure == "", lines, delimiter * (len(columns) - 1))
        grid = tf.stack(
            tf.io.decode_csv(
                safe,
                record_defaults=[""] * len(columns),
                field_delim=delimiter,
                use_quote_delim=quoted,
            ),
            axis=1,
        )  # (B, C)

        def col(name: str) -> Any:
            return grid[:, position[name]]

        checks = [structure]
        if label:
            checks.append(
                L.number_problem(
                    col(label)[:, None], [label], allow_empty=False
                )
            )
        if numeric:
            checks.append(
                L.number_problem(
                    tf.stack([col(n) for n in numeric], axis=1),
                    numeric,
                    allow_empty=True,
                )
            )
        problems = L.first_problem(*checks)
        keep, control = L.check_rows(
            paths, numbers, problems, lenient=lenient, skipped=skipped
        )
        bad = problems != ""
        features = {}
        with tf.control_dependencies([control]):
            for name, kind in kinds.items():
                text = tf.strings.strip(col(name))
                empty = tf.logical_or(text == "", bad)
                if kind == "numeric":
                    value = tf.strings.to_number(
                        tf.where(empty, "0", text), tf.float32
                    )
                    features[name] = tf.where(empty, float("nan"), value)
                elif kind == "integer":
                    value = tf.strings.to_number(
                        tf.where(empty, "0", text), tf.float64
                    )
                    features[name] = tf.where(
                        empty,
                        tf.constant(-1, tf.int64),
                        tf.cast(value, tf.int64),
                    )
                elif kind == "list":
                    items = tf.strings.split(text, list_separator)
                    width = max_len.get(name, 16)
                    features[name] = items.to_tensor(
                        default_value="", shape=[None, width]
                    )
                else:
                    features[name] = text
            if label:
                y = tf.strings.to_number(
                    tf.where(bad, "0", tf.strings.strip(col(label))), tf.float32
                )
            else:
                y = tf.zeros_like(counts, dtype=tf.float32)
        return _mask(features, y, keep, lenient)

    return _pipeline(
        files,
        parse,
        batch_size=batch_size,
        skip_header=header,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        skipped=skipped,
        lenient=lenient,
        holdout_every=holdout_every,
        holdout=holdout,
    )


def _pipeline(
    files: list[str],
    parse: Callable[..., Any],
    *,
    batch_size: int,
    skip_header: bool,
    shuffle_buffer: int,
    seed: int | None,
    repeat: bool,
    skipped: Any,
    lenient: bool,
    holdout_every: int | None = None,
    holdout: bool = False,
) -> Source:
    import tensorflow as tf

    if isinstance(batch_size, bool) or not (
        isinstance(batch_size, int) and batch_size > 0
    ):
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: "
            f"batch_size={batch_size!r}"
        )
    ds = L.numbered_lines(files)
    if shuffle_buffer:
        ds = ds.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def parse_kept(paths: Any, numbers: Any, lines: Any) -> Any:
        keep = L.line_mask(
            numbers,
            lines,
            skip_header=skip_header,
            holdout_every=holdout_every,
            holdout=holdout,
        )
        return parse(
            tf.boolean_mask(paths, keep),
            tf.boolean_mask(numbers, keep),
            tf.boolean_mask(lines, keep),
        )

    ds = ds.map(parse_kept, num_parallel_calls=L.AUTOTUNE, deterministic=True)
    # Masking can empty a batch (all blank, holdout or skipped lines).
    ds = ds.filter(lambda features, label: tf.size(label) > 0)
    return Source(ds.prefetch(L.AUTOTUNE), skipped, files)


def _mask(
    features: dict[str, Any], label: Any, keep: Any, lenient: bool
) -> Any:
    import tensorflow as tf

    if not lenient:
        return features, label
    masked = {k: tf.boolean_mask(v, keep) for k, v in features.items()}
    return masked, tf.boolean_mask(label, keep)


def _fix_width(x: Any, width: int, pad: int) -> Any:
    import tensorflow as tf

    x = x[:, :width]
    return tf.pad(x, [[0, 0], [0, width - tf.shape(x)[1]]], constant_values=pad)
