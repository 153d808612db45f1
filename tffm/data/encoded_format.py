"""The encoded-data format: row layout, shard headers, manifest checks.

See `tffm.data.encoded` for the format as a whole and its reader.
"""

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm.features import Feature
from tffm.features import Lookup
from tffm.features import MultiCategorical
from tffm.features import features_from_json

FORMAT = "tffm-encoded"
VERSION = 1
MANIFEST = "manifest.json"
LABEL = "label"
# Every shard's `.npy` header is padded to this many bytes, so a shard's
# data starts at the same offset and the writer can fill the header in
# last (the row count is known only then).
HEADER_BYTES = 128
WORD = np.dtype("<i4")


@dataclasses.dataclass(frozen=True)
class Column:
    """Where one feature (or the label) sits in a row of 4-byte words.

    Args:
        name: feature name, or `"label"`.
        dtype: `"int32"` (ids) or `"float32"` (values, label).
        offset: first word of the column in a row.
        width: words per row: 1, or `max_len` for a list.
        is_list: bool. A `(batch_size, width)` list of ids.
    """

    name: str
    dtype: str
    offset: int
    width: int
    is_list: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "offset": self.offset,
            "shape": [self.width] if self.is_list else [],
        }


def row_layout(features: Sequence[Feature]) -> tuple[Column, ...]:
    """The columns of an encoded row: scalar ids, lists, floats, label.

    Grouped by kind so that a batch splits into few blocks (the `tf.data`
    path unstacks each block in one op).
    """
    scalars = [f for f in features if isinstance(f, Lookup) and not f.shape]
    lists = [f for f in features if isinstance(f, MultiCategorical)]
    floats = [f for f in features if not isinstance(f, Lookup)]
    columns: list[Column] = []
    offset = 0
    for feature in [*scalars, *lists, *floats]:
        if isinstance(feature, MultiCategorical):
            width, is_list = feature.max_len, True
        else:
            width, is_list = 1, False
        columns.append(
            Column(feature.name, feature.encoded_dtype, offset, width, is_list)
        )
        offset += width
    columns.append(Column(LABEL, "float32", offset, 1, False))
    return tuple(columns)


def npy_header(rows: int, width: int) -> bytes:
    """A `.npy` (format 1.0) header for `(rows, width)` `<i4`, padded."""
    text = (
        f"{{'descr': '{WORD.str}', 'fortran_order': False, "
        f"'shape': ({rows}, {width}), }}"
    )
    size = HEADER_BYTES - 10  # magic (6) + version (2) + length (2)
    body = text.ljust(size - 1).encode("latin1") + b"\n"
    if len(body) != size:
        raise ValueError(f"Shard shape {(rows, width)} too large for a header.")
    return b"\x93NUMPY\x01\x00" + size.to_bytes(2, "little") + body


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard file and its row count."""

    path: str
    rows: int


def read_manifest(path: str) -> dict[str, Any]:
    """Reads and checks `manifest.json`; `features` comes back parsed."""
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a tffm encoded-data manifest (its `format` must be "
            f"{FORMAT!r})."
        )
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"{path}: format version {manifest.get('version')!r}; this tffm "
            f"reads version {VERSION}. Re-encode the data."
        )
    for key, kind in (
        ("features", list),
        ("columns", list),
        ("shards", list),
        ("rows", int),
    ):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(
                f"{path}: `{key}` must be a {kind.__name__}. "
                f"Received: {manifest.get(key)!r}"
            )
    try:
        manifest["features"] = features_from_json(
            json.dumps(manifest["features"])
        )
    except ValueError as error:
        raise ValueError(f"{path}: bad feature spec: {error}") from None
    for shard in manifest["shards"]:
        if (
            not isinstance(shard, dict)
            or not isinstance(shard.get("file"), str)
            or os.path.basename(shard["file"]) != shard["file"]
            or not isinstance(shard.get("rows"), int)
            or shard["rows"] < 0
        ):
            raise ValueError(
                f"{path}: each shard must be {{'file': <name in the "
                f"directory>, 'rows': <count>}}. Received: {shard!r}"
            )
    return manifest


def check_shard(path: str, rows: int, width: int) -> Shard:
    """Checks a shard's size and header against the manifest (no data read)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: shard listed in the manifest is missing."
        )
    size = os.path.getsize(path)
    expected = HEADER_BYTES + rows * width * WORD.itemsize
    if size != expected:
        raise ValueError(
            f"{path}: {size} bytes, expected {expected} (a {HEADER_BYTES}-byte "
            f"header + {rows} rows x {width} int32 words); the shard is "
            "truncated or is not the one the manifest describes."
        )
    with open(path, "rb") as f:
        header = f.read(HEADER_BYTES)
    if header != npy_header(rows, width):
        raise ValueError(
            f"{path}: its .npy header does not describe ({rows}, {width}) "
            "little-endian int32; the shard is not the one the manifest "
            "describes."
        )
    return Shard(path, rows)
