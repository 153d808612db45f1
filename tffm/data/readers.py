"""Streaming `tf.data` readers: Criteo TSV, CSV, libsvm / libFM / libFFM.

Every reader streams (files are never loaded whole), reads gzip and globs,
parses whole batches with TensorFlow string ops in parallel, and checks each
row: a malformed row fails with `file:line: what is wrong`, or, with
`lenient=True`, is skipped and counted in `Source.skipped`.

Each format's parsing is one top-level function of a batch of lines
(`parse_delimited`, `parse_libsvm`) returning the parsed columns and, per
row, what is wrong with it; `_pipeline` does the rest for every format.
"""

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from tffm import constants
from tffm.checks import check_int
from tffm.data import lines as L

_INT_PATTERN = r"[0-9]+"
_VALUE_PATTERN = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How any reader batches, shuffles, splits and checks rows.

    Args:
        batch_size: int. Rows per batch.
        shuffle_buffer: int. Rows in the shuffle buffer (0: no shuffle).
        seed: int. Shuffle seed.
        repeat: bool. Repeat forever (for `steps_per_epoch` training).
        lenient: bool. Skip and count malformed rows instead of failing.
        holdout_every: int. Split rows by line number: every N-th line is
            the holdout (validation) part (text formats only).
        holdout: bool. Read the holdout part (True) or the rest (False).
        in_order: bool. Read files one after another, rows in file order
            (scoring), instead of interleaving them.
        with_position: bool. Add each row's file and line (Parquet: row
            number, from 1) as features `"#file"` and `"#line"`.
        shard: `(count, index)`: read only every `count`-th line, from the
            `index`-th (one worker's part of the records; text formats).
        order: a `tffm.data.InputOrder`: shuffle each pass in an order
            fixed by `(seed, epoch)` and skip the lines a resumed epoch
            already trained on, instead of `shuffle_buffer`'s own
            reshuffling (text formats).
    """

    batch_size: int = 1024
    shuffle_buffer: int = 0
    seed: int | None = None
    repeat: bool = False
    lenient: bool = False
    holdout_every: int | None = None
    holdout: bool = False
    in_order: bool = False
    with_position: bool = False
    shard: tuple[int, int] | None = None
    order: Any = None

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, 1)
        check_int("shuffle_buffer", self.shuffle_buffer, 0)
        if self.holdout_every is not None:
            check_int("holdout_every", self.holdout_every, 2)


@dataclasses.dataclass
class Source:
    """A streaming dataset of `(features, label)` batches.

    Attributes:
        dataset: `tf.data.Dataset` yielding `(dict of tensors, label)`.
        log: the `RowLog` of its row checks (None for Parquet, whose rows
            are typed): malformed rows skipped so far and examples of why.
        files: the files read.
    """

    dataset: Any
    log: L.RowLog | None
    files: list[str]

    @property
    def skipped(self) -> Any:
        """`tf.Variable` (int64): malformed rows skipped so far."""
        return None if self.log is None else self.log.skipped


def check_kinds(kinds: Mapping[str, str]) -> None:
    """Fails on a column kind the readers cannot parse, naming the column."""
    for name, kind in kinds.items():
        if kind not in constants.COLUMN_KINDS:
            raise ValueError(
                f"Feature {name!r}: unknown kind {kind!r}. Expected one of "
                f"{constants.COLUMN_KINDS}."
            )


def read_criteo(
    pattern: str | Sequence[str],
    options: ReadOptions | None = None,
    *,
    has_label: bool | None = True,
    keep: Sequence[str] = (),
) -> Source:
    """Reads Criteo's TSV: label, I1..I13 (counts), C1..C26 (hex strings).

    Empty fields are missing: NaN for `I*`, `""` for `C*`. Without a label
    column (`has_label=False`, as Kaggle's `test.txt`) labels are 0;
    `has_label=None` decides from the first line's column count (40 or 39).
    Labels must be 0 or 1.

    Args:
        pattern: file path, glob, or list of them (gzip is detected).
        options: `ReadOptions`.
        has_label: bool or None. Whether the first column is the label.
        keep: columns (`I1`, `C3`, ...) to pass through as raw text, as
            features `"#<column>"`.

    Returns:
        A `Source` with features `I1..I13` (float32) and `C1..C26` (string).
    """
    files = L.resolve_files(pattern)
    if has_label is None:
        has_label = L.first_line(files[0]).count("\t") + 1 == 40
    label = "label" if has_label else None
    columns = ((label,) if label else ()) + tuple(constants.CRITEO_KINDS)

    def parse(lines: Any) -> Any:
        return parse_delimited(
            lines,
            columns=columns,
            kinds=constants.CRITEO_KINDS,
            label=label,
            delimiter="\t",
            quoted=False,
            binary=True,
            keep=keep,
        )

    _check_keep(keep, columns, files[0])
    return _pipeline(files, parse, options or ReadOptions(), header=False)


def read_csv(
    pattern: str | Sequence[str],
    options: ReadOptions | None = None,
    *,
    kinds: Mapping[str, str],
    label: str | None,
    delimiter: str = ",",
    list_separator: str = "|",
    max_len: Mapping[str, int] | None = None,
    column_names: Sequence[str] | None = None,
    binary: bool = False,
    keep: Sequence[str] = (),
) -> Source:
    """Reads delimited text with a header line (or `column_names`).

    Only the columns named in `kinds` (and `label`) are parsed; others are
    ignored. Fields are split on `delimiter`; double-quoted fields may hold
    the delimiter (`""` is a literal quote), as in RFC 4180.

    Args:
        pattern: file path, glob, or list of them (`.gz` read as gzip).
        options: `ReadOptions`.
        kinds: dict `{column: kind}`, kind one of `"numeric"` (float32, empty
            = NaN), `"categorical"` (string, empty = missing), `"integer"`
            (int64, empty = -1), `"list"` (strings separated by
            `list_separator`, padded with `""` to `max_len[column]`).
        label: str. Label column (float32), or None for unlabelled data.
        delimiter: str. Field separator.
        list_separator: str. Separator inside `"list"` cells.
        max_len: dict `{column: int}` for `"list"` columns (default 16).
        column_names: list of str. Names of the columns of files that have
            no header line (then no line is skipped).
        binary: bool. Labels must be 0 or 1 (a binary task).
        keep: columns to pass through as raw text, as features
            `"#<column>"` (row ids to join predictions back on).

    Returns:
        A `Source`.
    """
    check_kinds(kinds)
    files = L.resolve_files(pattern)
    header = column_names is None
    columns = _header(files, delimiter) if header else list(column_names or ())
    wanted = [*kinds, *([label] if label else [])]
    for name in wanted:
        if name not in columns:
            role = "label" if name == label else "feature"
            where = f"{files[0]}:1: the header" if header else "column_names"
            hint = ""
            if header and not set(wanted) & set(columns):
                hint = (
                    " It names none of the expected columns: if the file "
                    "has no header line, give its column names "
                    "(column_names / --column-names)."
                )
            raise ValueError(
                f"{where} has no column {name!r} (the {role} {name!r}). "
                f"Columns: {columns}.{hint}"
            )

    def parse(lines: Any) -> Any:
        return parse_delimited(
            lines,
            columns=tuple(columns),
            kinds=kinds,
            label=label,
            delimiter=delimiter,
            list_separator=list_separator,
            max_len=max_len,
            binary=binary,
            keep=keep,
        )

    _check_keep(keep, columns, files[0])
    return _pipeline(files, parse, options or ReadOptions(), header=header)


def read_libsvm(
    pattern: str | Sequence[str],
    options: ReadOptions | None = None,
    *,
    num_features: int | None = None,
    max_nonzeros: int | None = None,
    fields: Sequence[str] | None = None,
    ffm: bool = False,
    binary_labels: bool = False,
    binary: bool = False,
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
        options: `ReadOptions`.
        num_features: int. If given, indices must be below it.
        max_nonzeros: int. Pad / cut rows to this many entries.
        fields: list of str. Field names, one entry per field per row.
        ffm: bool. Also output `fields` `(batch, K)` int32 (libFFM field
            ids, -1 padding).
        binary_labels: bool. Map labels `> 0` to 1 and others to 0 (for
            `-1/+1` or `0/1` files).
        binary: bool. Labels must be 0 or 1 (a binary task), unless
            `binary_labels` maps them.

    Returns:
        A `Source`.
    """
    files = L.resolve_files(pattern)

    def parse(lines: Any) -> Any:
        return parse_libsvm(
            lines,
            num_features=num_features,
            max_nonzeros=max_nonzeros,
            fields=fields,
            ffm=ffm,
            binary_labels=binary_labels,
            binary=binary,
        )

    return _pipeline(files, parse, options or ReadOptions(), header=False)


def parse_delimited(
    lines: Any,
    *,
    columns: Sequence[str],
    kinds: Mapping[str, str],
    label: str | None,
    delimiter: str,
    quoted: bool = True,
    list_separator: str = "|",
    max_len: Mapping[str, int] | None = None,
    binary: bool = False,
    keep: Sequence[str] = (),
) -> tuple[dict[str, Any], Any, Any]:
    """Parses a batch of delimited lines (CSV, TSV).

    Args:
        lines: `(batch,)` string tensor, non-blank lines.
        columns: every column's name, in file order.
        kinds: `{column: kind}` of the columns to output (see `read_csv`).
        label: str. Label column, or None (labels are then 0).
        delimiter: str. Field separator.
        quoted: bool. RFC 4180 double quotes (CSV); False for TSV.
        list_separator: str. Separator inside `"list"` cells.
        max_len: `{column: int}` for `"list"` columns (default 16).
        binary: bool. Labels must be 0 or 1.
        keep: columns to output as raw text, as `"#<column>"`.

    Returns:
        `(features, labels, problems)`: `{column: (batch, ...)}`,
        `(batch,)` float32 and `(batch,)` string, `""` for a good row, else
        what is wrong with it (its values are then placeholders).
    """
    import tensorflow as tf  # deferred: TensorFlow

    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            "`delimiter` must be one character, not a double quote or a "
            f"line break. Received: delimiter={delimiter!r}"
        )
    max_len = dict(max_len or {})
    position = {name: j for j, name in enumerate(columns)}
    numeric = [n for n, k in kinds.items() if k in ("numeric", "integer")]
    lines = tf.strings.regex_replace(lines, "\r$", "")
    if quoted:
        # As `decode_csv` reads RFC 4180: a field is either quoted whole
        # (quotes inside doubled: "a ""b""") or holds no quote at all.
        d = f"\\x{{{ord(delimiter):X}}}"  # the delimiter, as an RE2 escape
        field = f'(?:"(?:[^"]|"")*"|[^"{d}]*)'
        quote_problem = tf.where(
            tf.strings.regex_full_match(lines, f"{field}(?:{d}{field})*"),
            "",
            "unbalanced double quote, or one inside an unquoted field",
        )
        # Count fields with quoted sections (which may hold the delimiter)
        # collapsed.
        flat = tf.strings.regex_replace(lines, r'"(?:[^"]|"")*"', "Q")
    else:
        flat, quote_problem = lines, tf.zeros_like(lines)
    counts = tf.strings.split(flat, delimiter).row_lengths()  # (B,)
    structure = L.first_problem(
        L.utf8_problem(lines),
        quote_problem,
        # `decode_csv` refuses a CR outside quotes (a trailing one is gone).
        tf.where(
            tf.strings.regex_full_match(flat, "[^\r]*"),
            "",
            "carriage return inside a field",
        ),
        L.column_count_problem(counts, [len(columns)]),
    )
    # Rows that cannot be split become an empty row, so the CSV op never
    # fails on them; `problems` reports them.
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
        return tf.strings.strip(grid[:, position[name]])  # (B,)

    checks = [structure]
    if label:
        checks.append(
            L.number_problem(col(label)[:, None], [label], allow_empty=False)
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
    bad = problems != ""
    if label:
        y = tf.strings.to_number(tf.where(bad, "0", col(label)), tf.float32)
        if binary:
            problems = L.first_problem(
                problems, L.binary_label_problem(y, f"column {label}")
            )
            bad = problems != ""
    else:
        y = tf.zeros_like(counts, dtype=tf.float32)
    features = {f"#{name}": col(name) for name in keep}
    for name, kind in kinds.items():
        text = col(name)
        empty = tf.logical_or(text == "", bad)
        if kind == "numeric":
            value = tf.strings.to_number(tf.where(empty, "0", text), tf.float32)
            features[name] = tf.where(empty, float("nan"), value)
        elif kind == "integer":
            value = tf.strings.to_number(tf.where(empty, "0", text), tf.float64)
            features[name] = tf.where(
                empty, tf.constant(-1, tf.int64), tf.cast(value, tf.int64)
            )
        elif kind == "list":
            items = tf.strings.split(text, list_separator)  # (B, None)
            features[name] = items.to_tensor(
                default_value="",
                shape=[None, max_len.get(name, constants.LIST_MAX_LEN)],
            )  # (B, max_len)
        else:
            features[name] = text
    return features, tf.where(bad, 0.0, y), problems


def parse_libsvm(
    lines: Any,
    *,
    num_features: int | None = None,
    max_nonzeros: int | None = None,
    fields: Sequence[str] | None = None,
    ffm: bool = False,
    binary_labels: bool = False,
    binary: bool = False,
) -> tuple[dict[str, Any], Any, Any]:
    """Parses a batch of libsvm / libFM / libFFM lines.

    Args:
        lines: `(batch,)` string tensor, non-blank lines.
        num_features: int. If given, indices must be below it.
        max_nonzeros: int. Pad / cut rows to this many entries.
        fields: list of str. Field names, one `idx:1` entry each per row.
        ffm: bool. Also output libFFM `fields`.
        binary_labels: bool. Map labels `> 0` to 1, others to 0.
        binary: bool. Labels must be 0 or 1 unless `binary_labels`.

    Returns:
        `(features, labels, problems)` as `parse_delimited` returns them.
    """
    import tensorflow as tf  # deferred: TensorFlow

    tokens = tf.strings.split(tf.strings.strip(lines))  # (B, None)
    # Lines are non-blank, so each has a first token: the label.
    label_text = tokens.to_tensor(default_value="", shape=[None, 1])[:, 0]
    entries = tokens[:, 1:]  # (B, None)
    parts = tf.strings.split(entries, ":")  # (B, None, None)
    arity = parts.row_lengths(axis=2)  # (B, None)
    is_ffm = (arity == 3).to_tensor()  # (B, K)
    arity_ok = tf.reduce_all(tf.logical_or(arity == 2, arity == 3), axis=1)
    cells = parts.to_tensor(default_value="0", shape=[None, None, 3])
    # For idx:val rows the value sits in column 1; for field:idx:val in 2.
    idx_text = tf.where(is_ffm, cells[:, :, 1], cells[:, :, 0])  # (B, K)
    val_text = tf.where(is_ffm, cells[:, :, 2], cells[:, :, 1])  # (B, K)
    field_text = tf.where(is_ffm, cells[:, :, 0], "0")  # (B, K)
    present = tf.sequence_mask(entries.row_lengths())  # (B, K)
    cell_ok = tf.logical_and(
        tf.logical_and(
            tf.strings.regex_full_match(idx_text, _INT_PATTERN),
            tf.strings.regex_full_match(field_text, _INT_PATTERN),
        ),
        tf.strings.regex_full_match(val_text, _VALUE_PATTERN),
    )
    cells_ok = tf.reduce_all(
        tf.logical_or(tf.logical_not(present), cell_ok), axis=1
    )
    problems = L.first_problem(
        L.utf8_problem(lines),
        L.number_problem(label_text[:, None], ["label"], allow_empty=False),
        tf.where(arity_ok, "", "entries must be idx:val or field:idx:val"),
        tf.where(cells_ok, "", "bad index or value in an idx:val entry"),
    )
    bad = problems != ""
    idx = tf.strings.to_number(
        tf.where(bad[:, None], "0", idx_text), tf.int64
    )  # (B, K)
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
    bad = problems != ""
    label = tf.strings.to_number(tf.where(bad, "0", label_text), tf.float32)
    if binary_labels:
        label = tf.cast(label > 0, tf.float32)
    elif binary:
        label_problem = L.binary_label_problem(label, "label")
        hint = tf.where(
            label_problem != "", " (for -1/+1 labels: --binary-labels)", ""
        )
        problems = L.first_problem(
            problems, tf.strings.join([label_problem, hint])
        )
        bad = problems != ""
        label = tf.where(bad, 0.0, label)
    if fields is not None:
        width = len(fields)
        ids = tf.pad(idx, [[0, 0], [0, width]])[:, :width]  # (B, F)
        return (
            {name: ids[:, j] for j, name in enumerate(fields)},
            label,
            problems,
        )
    values = tf.strings.to_number(
        tf.where(bad[:, None], "0", val_text), tf.float32
    )
    features = {
        "indices": tf.where(present, tf.cast(idx, tf.int32), -1),
        "values": tf.where(present, values, 0.0),
    }
    if ffm:
        field_ids = tf.strings.to_number(
            tf.where(bad[:, None], "0", field_text), tf.int32
        )
        features["fields"] = tf.where(present, field_ids, -1)
    if max_nonzeros is not None:
        features = {
            k: _fix_width(v, max_nonzeros, 0 if k == "values" else -1)
            for k, v in features.items()
        }
    return features, label, problems


def _check_keep(keep: Sequence[str], columns: Sequence[str], path: str) -> None:
    missing = [name for name in keep if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: no column {missing[0]!r} to keep (--keep-columns). "
            f"Columns: {list(columns)}"
        )


def _header(files: list[str], delimiter: str) -> list[str]:
    """The header of the first file; every other file must share it."""
    header = [
        h.strip().strip('"') for h in L.first_line(files[0]).split(delimiter)
    ]
    for path in files[1:]:
        other = [
            h.strip().strip('"') for h in L.first_line(path).split(delimiter)
        ]
        if other != header:
            raise ValueError(
                f"{path}:1: header differs from {files[0]}'s: {other}"
            )
    return header


def _pipeline(
    files: list[str],
    parse: Callable[[Any], tuple[dict[str, Any], Any, Any]],
    options: ReadOptions,
    *,
    header: bool,
) -> Source:
    """Lines -> shuffled batches -> `parse` -> row checks, for any format."""
    import tensorflow as tf  # deferred: TensorFlow

    lenient = options.lenient
    log = L.RowLog(lenient)
    ds = L.numbered_lines(files, in_order=options.in_order)
    if options.shard is not None:
        ds = ds.shard(*options.shard)
    if options.order is not None:
        ds = options.order.arrange(ds, options.shuffle_buffer, options.seed)
    elif options.shuffle_buffer:
        ds = ds.shuffle(
            options.shuffle_buffer,
            seed=options.seed,
            reshuffle_each_iteration=True,
        )
    if options.repeat:
        ds = ds.repeat()
    ds = ds.batch(options.batch_size)

    def parse_batch(paths: Any, numbers: Any, lines: Any) -> Any:
        keep = L.line_mask(
            numbers,
            lines,
            skip_header=header,
            holdout_every=options.holdout_every,
            holdout=options.holdout,
        )
        paths = tf.boolean_mask(paths, keep)
        numbers = tf.boolean_mask(numbers, keep)
        features, label, problems = parse(tf.boolean_mask(lines, keep))
        good, control = log.check(paths, numbers, problems)
        with tf.control_dependencies([control]):
            features = {k: tf.identity(v) for k, v in features.items()}
            label = tf.identity(label)
        if options.with_position:
            features["#file"] = paths
            features["#line"] = numbers
        if lenient:
            features = {
                k: tf.boolean_mask(v, good) for k, v in features.items()
            }
            label = tf.boolean_mask(label, good)
        return features, label

    ds = ds.map(parse_batch, num_parallel_calls=L.AUTOTUNE, deterministic=True)
    # Masking can empty a batch (all blank, holdout or skipped lines).
    ds = ds.filter(lambda features, label: tf.size(label) > 0)
    ds = _fixed_batches(ds, options.batch_size)
    if options.order is not None:
        ds = options.order.resume(ds)  # a resumed pass skips its batches
    return Source(ds.prefetch(L.AUTOTUNE), log, files)


def _fixed_batches(ds: Any, batch_size: int) -> Any:
    """`ds` cut again into batches of exactly `batch_size` rows.

    (The last batch may be smaller; rows of variable width keep theirs.)
    Masking leaves each batch a different number of rows: under XLA every
    new batch size is a new compilation (measured: about 10,000 memory
    maps and a compile each, per fit, until the process hits the kernel's
    65,530-map limit after a few fits), and a resumed epoch could not
    count its steps in rows. Rows of variable width (padded sparse libsvm
    rows, as wide as their batch's longest) keep their batches.
    """
    import tensorflow as tf  # deferred: TensorFlow

    shapes = tf.nest.flatten(
        tf.nest.map_structure(lambda spec: spec.shape, ds.element_spec)
    )
    if not all(shape[1:].is_fully_defined() for shape in shapes):
        return ds
    return ds.rebatch(batch_size)


def _fix_width(x: Any, width: int, pad: int) -> Any:
    import tensorflow as tf  # deferred: TensorFlow

    x = x[:, :width]
    return tf.pad(x, [[0, 0], [0, width - tf.shape(x)[1]]], constant_values=pad)
