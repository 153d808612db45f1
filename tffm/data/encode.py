"""Writes encoded binary data once ("encode once, train many").

The format and its reader are in `tffm.data.encoded`.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm.checks import check_int
from tffm.data.encoded import EncodedData
from tffm.data.encoded_format import FORMAT
from tffm.data.encoded_format import LABEL
from tffm.data.encoded_format import MANIFEST
from tffm.data.encoded_format import VERSION
from tffm.data.encoded_format import WORD
from tffm.data.encoded_format import Column
from tffm.data.encoded_format import npy_header
from tffm.data.encoded_format import row_layout
from tffm.data.layout import DataLayout
from tffm.data.lines import raise_row_errors
from tffm.data.source import open_source
from tffm.features import Feature
from tffm.features import Lookup
from tffm.features import features_to_json
from tffm.features import normalize_features

# Default shard size: a window of one shard is then about this many bytes.
SHARD_BYTES = 64 << 20


def encode_files(
    layout: DataLayout,
    files: str | Sequence[str],
    output: str,
    features: Sequence[Feature],
    *,
    holdout: bool | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    rows_per_shard: int | None = None,
    open_shards: int = 8,
    overwrite: bool = False,
) -> EncodedData:
    """Parses and encodes data files once into an encoded dataset.

    Reads `files` as `layout` says (`tffm.data.open_source`: format,
    columns, `lenient`, holdout split), encodes every row with
    `FeatureEncoder(features)` and writes the ids / values / labels with
    `write_encoded`. Rows are read in file order; `write_encoded` mixes
    them into shards with `seed`.

    Args:
        layout: the `DataLayout` of `files`.
        files: data files or globs.
        output: str. Directory to write.
        features: the feature spec (e.g. `tffm.train.build_features`).
        holdout: bool or None. Only the holdout rows (True: every
            `layout.holdout_every`-th line), only the others (False), or
            every row (None).
        seed: int. Seed of the write-time mixing.
        batch_size: int. Rows read and encoded at a time (the mixing draws
            one batch at a time, so the shards depend on it).
        rows_per_shard: int. Rows per shard (default: about 64 MiB each).
        open_shards: int. Shards filled at once (write-time mixing).
        overwrite: bool. Replace an existing `output`.

    Returns:
        The written `EncodedData`.
    """
    from tffm.encoder import FeatureEncoder  # deferred: Keras

    features = normalize_features(features)
    _check_output(output, overwrite)
    source = open_source(
        layout, list(_as_list(files)), batch_size=batch_size, holdout=holdout
    )
    encoded = FeatureEncoder(features).map_dataset(source.dataset)
    info: dict[str, Any] = {"files": source.files, "holdout": holdout}
    with raise_row_errors():
        data = write_encoded(
            encoded.as_numpy_iterator(),
            output,
            features,
            rows_per_shard=rows_per_shard,
            open_shards=open_shards,
            seed=seed,
            overwrite=overwrite,
            info=info,
            log=source.log,
        )
    return data


def write_encoded(
    batches: Iterable[tuple[Mapping[str, Any], Any]],
    output: str,
    features: Sequence[Feature],
    *,
    rows_per_shard: int | None = None,
    open_shards: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    info: Mapping[str, Any] | None = None,
    log: Any = None,
) -> EncodedData:
    """Writes encoded batches as shards plus a manifest.

    Batches are what `FeatureEncoder` outputs (numpy arrays or tensors):
    integer ids `(batch_size,)` / `(batch_size, list_length)` (lists
    narrower than `max_len` are padded with id 0, wider ones refused), float
    numeric values `(batch_size,)`, and float labels. Ids are checked to lie
    in `[0, num_ids)`.

    Write-time mixing: `open_shards` shards fill at once and each row goes
    to one of them at random (`seed`), so a shard is a random sample of
    about `open_shards * rows_per_shard` consecutive input rows. Files are
    written to a temporary directory beside `output` and moved into place
    only when complete.

    Args:
        batches: iterable of `(features dict, label)`.
        output: str. Directory to write.
        features: the feature spec the ids were encoded with.
        rows_per_shard: int. Rows per shard (default: about 64 MiB each).
        open_shards: int. Shards filled at once.
        seed: int. Seed of the row-to-shard assignment.
        overwrite: bool. Replace an existing `output`.
        info: dict. Extra JSON-serializable facts for the manifest.
        log: a `RowLog`, whose summary (skipped rows) the manifest keeps.

    Returns:
        The written `EncodedData`.
    """
    features = normalize_features(features)
    columns = row_layout(features)
    width = columns[-1].offset + 1
    if rows_per_shard is None:
        rows_per_shard = max(1, SHARD_BYTES // (width * WORD.itemsize))
    check_int("rows_per_shard", rows_per_shard, 1)
    check_int("open_shards", open_shards, 1)
    for feature in features:
        if isinstance(feature, Lookup) and feature.num_ids > 2**31 - 1:
            raise ValueError(
                f"Feature {feature.name!r}: {feature.num_ids} ids do not "
                "fit int32."
            )
    _check_output(output, overwrite)
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".encoding-", dir=parent)
    try:
        writer = _ShardWriter(staging, width, rows_per_shard, open_shards, seed)
        for batch in batches:
            writer.add(_pack(features, columns, width, *batch))
        shards = writer.close()
        if not shards:
            raise ValueError(f"No rows to write to {output!r}.")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "features": json.loads(features_to_json(features)),
            "columns": [c.to_json() for c in columns],
            "row_width": width,
            "rows": sum(rows for _, rows in shards),
            "shards": [{"file": f, "rows": rows} for f, rows in shards],
            "written_with": {
                "rows_per_shard": rows_per_shard,
                "open_shards": open_shards,
                "seed": seed,
            },
            "source": dict(info or {}),
        }
        if log is not None and getattr(log, "lenient", False):
            manifest["source"]["skipped_rows"] = log.summary()
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
        if os.path.exists(output):
            shutil.rmtree(output)  # `overwrite` was checked above
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EncodedData(output)


class _ShardWriter:
    """Fills `slots` shards at once; each row goes to a random one."""

    def __init__(
        self, directory: str, width: int, capacity: int, slots: int, seed: int
    ) -> None:
        self.directory = directory
        self.width = width
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.done: list[tuple[str, int]] = []
        self.count = 0
        self.slots: list[list[Any]] = []  # [file, name, rows]
        for _ in range(slots):
            self.slots.append(self._open())

    def _open(self) -> list[Any]:
        name = f"shard-{self.count:05d}.npy"
        self.count += 1
        f = open(os.path.join(self.directory, name), "wb")
        f.write(npy_header(0, self.width))  # rewritten on close
        return [f, name, 0]

    def add(self, rows: np.ndarray) -> None:
        """Scatters `(n, width)` int32 rows over the open shards."""
        slot = self.rng.integers(0, len(self.slots), len(rows))
        order = np.argsort(slot, kind="stable")
        bounds = np.cumsum(np.bincount(slot, minlength=len(self.slots)))
        begin = 0
        for k, end in enumerate(bounds.tolist()):
            part = rows[order[begin:end]]
            begin = end
            while len(part):
                f, name, count = self.slots[k]
                room = self.capacity - count
                f.write(part[:room].tobytes())
                self.slots[k][2] = count + min(room, len(part))
                part = part[room:]
                if self.slots[k][2] == self.capacity:
                    self._finish(self.slots[k])
                    self.slots[k] = self._open()

    def _finish(self, slot: list[Any]) -> None:
        f, name, rows = slot
        f.seek(0)
        f.write(npy_header(rows, self.width))
        f.close()
        if rows:
            self.done.append((name, rows))
        else:
            os.remove(os.path.join(self.directory, name))

    def close(self) -> list[tuple[str, int]]:
        for slot in self.slots:
            self._finish(slot)
        self.slots = []
        return sorted(self.done)


def _pack(
    features: Sequence[Feature],
    columns: Sequence[Column],
    width: int,
    values: Mapping[str, Any],
    label: Any,
) -> np.ndarray:
    """One batch -> `(batch_size, width)` int32 rows (floats as bits)."""
    by_name = {f.name: f for f in features}
    missing = [f.name for f in features if f.name not in values]
    if missing:
        raise ValueError(
            f"Encoded batch lacks features {missing}. "
            f"Received keys: {sorted(values)}"
        )
    y = np.asarray(label)
    rows = np.zeros((len(y), width), np.int32)
    for c in columns:
        is_label = c.name == LABEL
        x = y if is_label else np.asarray(values[c.name])
        where = "the label" if is_label else f"Feature {c.name!r}"
        rank = 2 if c.is_list else 1
        if x.ndim != rank or x.shape[0] != len(y):
            raise ValueError(
                f"{where}: expected rank {rank} with {len(y)} rows (the "
                f"label's). Received shape {x.shape}"
            )
        if c.dtype == "float32":
            if x.dtype.kind not in "fiub":
                raise ValueError(f"{where}: numbers expected, got {x.dtype}")
            rows[:, c.offset] = x.astype(np.float32).view(np.int32)
            continue
        if x.dtype.kind not in "iu":
            raise ValueError(
                f"{where}: integer ids expected (the encoder's output), got "
                f"{x.dtype}; encode raw values with `FeatureEncoder` first."
            )
        feature = by_name[c.name]
        if x.size and (x.min() < 0 or x.max() >= feature.num_ids):
            raise ValueError(
                f"{where}: ids must lie in [0, {feature.num_ids}) "
                f"(the spec's ids). Received ids in [{x.min()}, {x.max()}]"
            )
        if c.is_list:
            if x.shape[1] > c.width:
                raise ValueError(
                    f"{where}: lists of {x.shape[1]} ids exceed max_len="
                    f"{c.width}."
                )
            rows[:, c.offset : c.offset + x.shape[1]] = x
        else:
            rows[:, c.offset] = x
    return rows


def _check_output(output: str, overwrite: bool) -> None:
    if os.path.isfile(output):
        raise FileExistsError(f"{output!r} is a file, not a directory.")
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise FileExistsError(
            f"{output!r} exists and is not empty; pass overwrite=True "
            "(--overwrite) to replace it."
        )


def _as_list(files: str | Sequence[str]) -> list[str]:
    return [files] if isinstance(files, str) else list(files)
