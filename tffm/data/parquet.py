"""Streaming Parquet reader (pyarrow record batches -> tf.data)."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm import constants
from tffm.data import lines as L
from tffm.data.readers import ReadOptions
from tffm.data.readers import Source
from tffm.data.readers import check_kinds


def read_parquet(
    pattern: str | Sequence[str],
    options: ReadOptions | None = None,
    *,
    kinds: Mapping[str, str],
    label: str | None,
    max_len: Mapping[str, int] | None = None,
    binary: bool = False,
    keep: Sequence[str] = (),
) -> Source:
    """Reads Parquet files one record batch at a time (never whole).

    Columns and kinds are as in `read_csv`; a `"list"` column is a Parquet
    list of strings, cut / padded with `""` to `max_len[column]` (default
    16). Nulls are missing values (NaN, `""`, -1). Parquet is typed, so rows
    are checked only for what its types allow: infinite numbers and (with
    `binary`) labels other than 0 / 1, reported as `file:row N: problem`
    (or skipped and logged with `lenient`).

    Args:
        pattern: file path, glob or list of them.
        options: `ReadOptions` (`batch_size`, `shuffle_buffer`, `seed`,
            `repeat`, `lenient`, `with_position`; no `holdout_every`: give
            validation files instead).
        kinds: dict `{column: kind}`.
        label: str. Label column, or None.
        max_len: dict `{column: int}` for list columns.
        binary: bool. Labels must be 0 or 1.
        keep: columns to pass through as text, as features `"#<column>"`.

    Returns:
        A `Source`.
    """
    import pyarrow.parquet as pq  # deferred: TensorFlow
    import tensorflow as tf

    options = options or ReadOptions()
    if options.holdout_every:
        raise ValueError(
            "Parquet data has no line numbers to hold out by: give "
            "validation files (`validation_data`) instead of `holdout_every`."
        )
    check_kinds(kinds)
    files = L.resolve_files(pattern)
    max_len = dict(max_len or {})
    batch_size = options.batch_size
    columns = list(dict.fromkeys([*kinds, *([label] if label else []), *keep]))
    for path in files:
        schema = pq.read_schema(path)
        for name in columns:
            if name not in schema.names:
                role = "label" if name == label else "feature"
                if name in keep and name not in kinds:
                    role = "column to keep"
                raise ValueError(
                    f"{path}: no column {name!r} (the {role} {name!r}); "
                    f"columns are {schema.names}"
                )
    log = L.RowLog(options.lenient)

    def generate() -> Any:
        try:
            yield from batches()
        except ValueError as error:  # reported by `raise_row_errors`
            log.python_error = log.python_error or str(error)
            raise

    def batches() -> Any:
        for path in files:
            reader = pq.ParquetFile(path)
            first = 1
            for batch in reader.iter_batches(batch_size, columns=columns):
                rows = np.arange(first, first + batch.num_rows)
                first += batch.num_rows
                features = {
                    name: _convert(
                        batch.column(name),
                        kind,
                        max_len.get(name, constants.LIST_MAX_LEN),
                        path,
                        name,
                    )
                    for name, kind in kinds.items()
                }
                y = (
                    _convert(batch.column(label), "numeric", 0, path, label)
                    if label
                    else np.zeros(batch.num_rows, np.float32)
                )
                bad = _row_problems(features, kinds, y, label, binary)
                features.update(
                    {
                        f"#{name}": _convert(
                            batch.column(name), "categorical", 0, path, name
                        )
                        for name in keep
                    }
                )
                if options.with_position:
                    features["#file"] = np.full(batch.num_rows, path, object)
                    features["#line"] = rows
                if bad:
                    log.reject(
                        [f"{path}:row {rows[i]}: {why}" for i, why in bad]
                    )
                    good = np.ones(batch.num_rows, bool)
                    good[[i for i, _ in bad]] = False
                    features = {k: v[good] for k, v in features.items()}
                    y = y[good]
                if len(y):
                    yield features, y

    spec = {
        name: tf.TensorSpec(
            (None, max_len.get(name, constants.LIST_MAX_LEN))
            if kind == "list"
            else (None,),
            {"numeric": tf.float32, "integer": tf.int64}.get(kind, tf.string),
        )
        for name, kind in kinds.items()
    }
    spec.update({f"#{n}": tf.TensorSpec((None,), tf.string) for n in keep})
    if options.with_position:
        spec["#file"] = tf.TensorSpec((None,), tf.string)
        spec["#line"] = tf.TensorSpec((None,), tf.int64)
    ds = tf.data.Dataset.from_generator(
        generate, output_signature=(spec, tf.TensorSpec((None,), tf.float32))
    )
    if options.shuffle_buffer:
        ds = (
            ds.unbatch()
            .shuffle(options.shuffle_buffer, seed=options.seed)
            .batch(batch_size)
        )
    if options.repeat:
        ds = ds.repeat()
    return Source(ds.prefetch(L.AUTOTUNE), log, files)


def _row_problems(
    features: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    labels: np.ndarray,
    label: str | None,
    binary: bool,
) -> list[tuple[int, str]]:
    """`(row index, problem)` of the rows a model must not see."""
    problems: dict[int, str] = {}
    for name, kind in kinds.items():
        if kind == "numeric":
            for i in np.flatnonzero(np.isinf(features[name])).tolist():
                problems.setdefault(
                    i, f"column {name}: infinite or beyond float32 (+-3.4e38)"
                )
    if label and binary:
        wrong = ~((labels == 0) | (labels == 1))
        for i in np.flatnonzero(wrong).tolist():
            problems.setdefault(
                i,
                f"column {label} must be 0 or 1 for a binary task, got "
                f"{labels[i]:g}",
            )
    return sorted(problems.items())


def _convert(column: Any, kind: str, width: int, path: str, name: str) -> Any:
    import pyarrow as pa  # optional: the [data] extra
    import pyarrow.compute as pc

    try:
        if kind == "numeric":
            values = np.asarray(
                pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
            )
            with np.errstate(over="ignore"):  # beyond float32: inf, refused
                return values.astype(np.float32)
        if kind == "integer":
            return np.asarray(
                pc.fill_null(pc.cast(column, pa.int64()), -1)
            ).astype(np.int64)
        if kind == "list":
            out = np.full((len(column), width), "", dtype=object)
            for row, items in enumerate(column.to_pylist()):
                items = [str(v) for v in (items or []) if v is not None]
                out[row, : min(len(items), width)] = items[:width]
            return out
        return np.asarray(
            pc.fill_null(pc.cast(column, pa.string()), ""), dtype=object
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(
            f"{path}: column {name!r} cannot be read as {kind}: {error}"
        ) from None
