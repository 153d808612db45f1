"""Streaming Parquet reader (pyarrow record batches -> tf.data)."""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

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
) -> Source:
    """Reads Parquet files one record batch at a time (never whole).

    Columns and kinds are as in `read_csv`; a `"list"` column is a Parquet
    list of strings, cut / padded with `""` to `max_len[column]` (default
    16). Nulls are missing values (NaN, `""`, -1).

    Args:
        pattern: file path, glob or list of them.
        options: `ReadOptions` (`batch_size`, `shuffle_buffer`, `seed`,
            `repeat`; Parquet rows are typed, so there is no `lenient`, and
            no `holdout_every`: give validation files instead).
        kinds: dict `{column: kind}`.
        label: str. Label column, or None.
        max_len: dict `{column: int}` for list columns.

    Returns:
        A `Source` (`skipped` is None: Parquet is typed, rows can't be
        malformed).
    """
    import pyarrow.parquet as pq
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
    columns = list(kinds) + ([label] if label else [])
    for path in files:
        schema = pq.read_schema(path)
        for name in columns:
            if name not in schema.names:
                raise ValueError(
                    f"{path}: no column {name!r} for feature {name!r}; "
                    f"columns are {schema.names}"
                )

    def generate() -> Any:
        for path in files:
            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(batch_size, columns=columns):
                features = {
                    name: _convert(
                        batch.column(name),
                        kind,
                        max_len.get(name, 16),
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
                yield features, y

    spec = {
        name: tf.TensorSpec(
            (None, max_len.get(name, 16)) if kind == "list" else (None,),
            {"numeric": tf.float32, "integer": tf.int64}.get(kind, tf.string),
        )
        for name, kind in kinds.items()
    }
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
    return Source(ds.prefetch(L.AUTOTUNE), None, files)


def _convert(column: Any, kind: str, width: int, path: str, name: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        if kind == "numeric":
            return np.asarray(
                pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
            ).astype(np.float32)
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
