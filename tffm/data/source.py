"""Raw files as a reader `Source`, by a `DataLayout`: the one way in.

Training, the scans, encoding, evaluation and batch scoring read raw files
through `open_source`, so every one of them parses a file the same way.
"""

from collections.abc import Sequence
from typing import Any

from tffm.data import lines
from tffm.data.layout import DataLayout
from tffm.data.parquet import read_parquet
from tffm.data.readers import ReadOptions
from tffm.data.readers import Source
from tffm.data.readers import read_criteo
from tffm.data.readers import read_csv
from tffm.data.readers import read_libsvm


def open_source(
    layout: DataLayout,
    files: Sequence[str],
    *,
    batch_size: int,
    holdout: bool | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    scoring: bool = False,
    keep: tuple[str, ...] = (),
    shard: tuple[int, int] | None = None,
    order: Any = None,
) -> Source:
    """A reader `Source` over `files`, read as `layout` says.

    Args:
        layout: the `DataLayout`.
        files: files or globs.
        batch_size: int. Rows per batch.
        holdout: bool or None. Read only the holdout part (True: every
            `layout.holdout_every`-th line), only the rest (False), or every
            row (None).
        shuffle_buffer: int. Rows in the shuffle buffer (0: file order).
        seed: int. Shuffle seed.
        scoring: bool. Rows in input order with their file and line
            (`"#file"`, `"#line"`), and the label only if the data has one
            (the label is then 0).
        keep: columns to pass through as raw text (`"#<column>"`).
        shard: `(count, index)`: only every `count`-th line from the
            `index`-th (one worker's part).
        order: a `tffm.data.InputOrder` fixing each epoch's order.
    """
    if holdout is not None and layout.holdout_every is None:
        raise ValueError(
            "This layout cuts no holdout from the data (holdout_every is "
            "None): read the validation files instead."
        )
    if layout.format == "parquet" and (holdout is not None or shard):
        raise ValueError(
            "Parquet data has no line numbers to hold out or shard by: "
            "give `validation_data` (--validation-data), and at least one "
            "file per worker."
        )
    options = ReadOptions(
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        lenient=layout.lenient,
        holdout_every=None if holdout is None else layout.holdout_every,
        holdout=bool(holdout),
        in_order=scoring,
        with_position=scoring,
        shard=shard,
        order=order,
    )
    files = list(files)
    label = layout.label
    if scoring and not has_label(layout, files):
        label = None
    if layout.format == "criteo":
        return read_criteo(
            files, options, has_label=None if scoring else True, keep=keep
        )
    if layout.format == "libsvm":
        if not layout.fields:
            raise ValueError(
                "libsvm data needs `fields` (--fields: one name per idx:1 "
                "entry of a row) for feature-spec models: its first rows do "
                "not each hold the same number of entries of value 1."
            )
        if keep:
            raise ValueError("libsvm rows have no named columns to keep.")
        return read_libsvm(
            files,
            options,
            fields=list(layout.fields),
            binary_labels=layout.binary_labels,
            binary=layout.binary,
        )
    if layout.format == "parquet":
        return read_parquet(
            files,
            options,
            kinds=layout.kinds(),
            label=label,
            max_len=layout.max_lens(),
            binary=layout.binary,
            keep=keep,
        )
    if layout.format != "csv":
        raise ValueError(
            f"format={layout.format!r} is not a raw-file format: encoded "
            "data is read with `tffm.data.read_encoded`."
        )
    return read_csv(
        files,
        options,
        kinds=layout.kinds(),
        label=label,
        delimiter=layout.delimiter,
        list_separator=layout.list_separator,
        max_len=layout.max_lens(),
        column_names=(
            None if layout.column_names is None else list(layout.column_names)
        ),
        binary=layout.binary,
        keep=keep,
    )


def has_label(layout: DataLayout, files: Sequence[str]) -> bool:
    """Whether `files` hold the label column (scoring takes unlabelled data)."""
    first = lines.resolve_files(list(files))[0]
    if layout.format == "libsvm":
        return True
    if layout.format == "criteo":
        return lines.first_line(first).count("\t") + 1 == 40
    if layout.format == "parquet":
        import pyarrow.parquet as pq  # optional: the `[data]` extra

        return layout.label in pq.read_schema(first).names
    if layout.column_names:
        return layout.label in layout.column_names
    header = lines.first_line(first).split(layout.delimiter)
    return layout.label in [h.strip().strip('"') for h in header]
