"""Encoded binary data: "encode once, train many" (reader and format).

`tffm.data.encode_files` writes what `FeatureEncoder` outputs (int32 ids,
float32 numeric values, the float32 label) once; this module streams it
back without parsing, shuffled, as numpy batches (any backend, no
TensorFlow) or as a `tf.data.Dataset` that `model.fit` takes.

Format: a directory with `manifest.json` and shards `shard-NNNNN.npy`,
each a `(rows, row_width)` little-endian int32 `.npy` (a plain numpy file:
`np.load(path, mmap_mode="r")` opens it). A row is one example; its words
are the columns the manifest lists (`name`, `dtype`, `offset`, `shape`):
single-valued ids first, then each list's `max_len` ids, then the numeric
values and the label as float32 bit patterns. Rows, not columns, are
contiguous because shuffling gathers rows: one gather of whole rows costs
less than one gather per column (benchmarks/RESULTS.md, "Encoded input").

Randomness per epoch (seed `ReadOptions.seed`, epoch number `e`): the
shards are visited in a uniformly random order; consecutive shards in that
order form windows of at most `shuffle_buffer` rows (at least one shard);
each window's rows are uniformly permuted; batches are consecutive runs of
that stream, so every row is seen exactly once per epoch and only the
epoch's last batch may be short. `encode_files` adds write-time mixing:
each shard is a random sample of the rows around it in the input, so
windows do not follow the input's order. Memory: about two windows.
"""

import dataclasses
import os
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm.data.encoded_format import HEADER_BYTES
from tffm.data.encoded_format import LABEL
from tffm.data.encoded_format import MANIFEST
from tffm.data.encoded_format import WORD
from tffm.data.encoded_format import Column
from tffm.data.encoded_format import Shard
from tffm.data.encoded_format import check_shard
from tffm.data.encoded_format import read_manifest
from tffm.data.encoded_format import row_layout
from tffm.data.readers import ReadOptions
from tffm.data.readers import Source
from tffm.features import Feature

# Rows the `tf.data` path takes from Python per call: the per-call cost of
# `from_generator` then hides behind the work of many batches.
_CHUNK_ROWS = 1 << 18
# Rows gathered and transposed at once by the numpy path.
_BLOCK = 2048


class EncodedData:
    """An encoded dataset directory, opened and checked (reads headers only).

    Checks the manifest (format, version, feature spec, columns, row counts)
    and that every shard exists with exactly the bytes its rows need; every
    error names the file.

    Args:
        path: str. A directory written by `tffm.data.encode_files` or
            `tffm.data.write_encoded`.

    Attributes:
        features: the feature spec the ids were encoded with.
        columns: the row layout (`row_layout(features)`).
        shards: the `Shard`s, in written order.
        num_rows: total rows.
        manifest: the manifest as a dict.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        manifest_path = os.path.join(path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise FileNotFoundError(
                f"{manifest_path}: no such file; {path!r} is not an encoded "
                "dataset (write one with `tffm encode` or "
                "`tffm.data.encode_files`)."
            )
        self.manifest = read_manifest(manifest_path)
        self.features: tuple[Feature, ...] = self.manifest["features"]
        self.columns = row_layout(self.features)
        self.row_width = self.columns[-1].offset + 1
        self.shards = tuple(
            check_shard(
                os.path.join(path, s["file"]), s["rows"], self.row_width
            )
            for s in self.manifest["shards"]
        )
        self.num_rows = sum(s.rows for s in self.shards)
        if self.num_rows != self.manifest["rows"]:
            raise ValueError(
                f"{manifest_path}: `rows` is {self.manifest['rows']} but its "
                f"shards hold {self.num_rows} rows."
            )
        expected = [c.to_json() for c in self.columns]
        if self.manifest["columns"] != expected:
            raise ValueError(
                f"{manifest_path}: `columns` do not match the layout of its "
                f"features: {self.manifest['columns']} != {expected}"
            )

    def num_batches(self, options: ReadOptions) -> int:
        """Batches per epoch (the last may be short)."""
        rows = sum(s.rows for s in self._shards(options))
        return -(-rows // options.batch_size)

    def batches(
        self, options: ReadOptions, *, epoch: int = 0, start: int = 0
    ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Numpy `(features, label)` batches of epoch `epoch` (no TF).

        Args:
            options: `ReadOptions`: `batch_size`, `shuffle_buffer` (window
                rows; 0 or `in_order`: no shuffling), `seed`, `repeat`
                (then epochs `epoch, epoch + 1, ...` follow), `shard`
                (`(count, index)`: every `count`-th shard file).
            epoch: int. Which epoch's order to read.
            start: int. First batch to yield (a resumed epoch skips those
                it trained on).

        Yields:
            `({feature: array}, label)`: int32 `(batch_size,)` or
            `(batch_size, max_len)` ids, float32 `(batch_size,)` values and
            labels.
        """
        reader = EpochReader(self, options)
        while True:
            plan = reader.plan(epoch)
            size = options.batch_size
            for i in range(start, -(-plan.rows // size)):
                yield self.split(reader.columns(plan, i * size, (i + 1) * size))
            if not options.repeat:
                return
            epoch, start = epoch + 1, 0

    def read_rows(self) -> np.ndarray:
        """Every row, in written order: one `(num_rows, row_width)` int32.

        Floats are their bit patterns (`split` views them back).
        """
        return _load(self.shards, self.row_width)

    def split(
        self, words: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """`(row_width, batch_size)` words -> `(features, label)` arrays."""
        out: dict[str, np.ndarray] = {}
        for c in self.columns:
            block = words[c.offset : c.offset + c.width]  # (width, B)
            if c.is_list:
                out[c.name] = np.ascontiguousarray(block.T)  # (B, width)
            elif c.dtype == "float32":
                out[c.name] = block[0].view(np.float32)  # (B,)
            else:
                out[c.name] = block[0]  # (B,)
        label = out.pop(LABEL)
        return out, label

    def _shards(self, options: ReadOptions) -> tuple[Shard, ...]:
        _check_options(options)
        if options.shard is None:
            return self.shards
        count, index = options.shard
        if count > len(self.shards):
            raise ValueError(
                f"{self.path}: {len(self.shards)} shards cannot be split "
                f"among {count} workers; encode with more shards "
                "(`rows_per_shard`)."
            )
        return self.shards[index::count]


def read_encoded(
    path: str, options: ReadOptions | None = None, *, epoch: int = 0
) -> Source:
    """Reads an encoded dataset as a `tf.data` `Source` (any backend).

    The same batches, in the same order, as `EncodedData.batches` with the
    same options: numpy gathers chunks of rows in the shuffled order and
    TensorFlow slices them into batches and columns. Each pass over the
    dataset (each `model.fit` epoch) reads the next epoch's order.

    Args:
        path: str. Encoded dataset directory.
        options: `ReadOptions` (see `EncodedData.batches`).
        epoch: int. The first pass's epoch.

    Returns:
        A `Source` (its `files` are the shard files; no row log: rows were
        checked when encoded).
    """
    import tensorflow as tf  # deferred: TensorFlow

    data = EncodedData(path)
    options = options or ReadOptions()
    reader = EpochReader(data, options)
    epochs = iter(range(epoch, 2**62))
    size = options.batch_size
    chunk_rows = max(1, _CHUNK_ROWS // size) * size

    def chunks() -> Iterator[np.ndarray]:
        plan = reader.plan(next(epochs))
        for begin in range(0, plan.rows, chunk_rows):
            yield reader.rows(plan, begin, begin + chunk_rows)

    width = data.row_width
    dataset = tf.data.Dataset.from_generator(
        chunks, output_signature=tf.TensorSpec((None, width), tf.int32)
    )
    groups = _groups(data.columns)

    def split(rows: Any) -> Any:
        words = tf.transpose(rows)  # (B, W) -> (W, B)
        out: dict[str, Any] = {}
        for kind, names, first, stop in groups:
            block = words[first:stop]  # (n, B)
            if kind == "list":
                out[names[0]] = tf.transpose(block)  # (B, max_len)
                continue
            if kind == "float32":
                block = tf.bitcast(block, tf.float32)
            out.update(
                zip(names, tf.unstack(block, num=len(names)), strict=True)
            )
        label = out.pop(LABEL)
        return out, label

    def batches(rows: Any) -> Any:
        count = tf.shape(rows, out_type=tf.int64)[0]
        return tf.data.Dataset.range(0, count, size).map(
            lambda begin: split(rows[begin : begin + size])
        )

    dataset = dataset.flat_map(batches)
    if options.repeat:
        dataset = dataset.repeat()
    else:  # Keras then knows the steps per epoch (progress bar, no warning)
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(data.num_batches(options))
        )
    files = [s.path for s in data._shards(options)]
    return Source(dataset.prefetch(2), None, files)


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """One epoch's order: windows of shards and their row permutations."""

    epoch: int
    windows: tuple[tuple[Shard, ...], ...]
    starts: np.ndarray  # (num_windows + 1,) first row of each window
    rows: int


class EpochReader:
    """Reads rows of an epoch's shuffled stream; caches two windows."""

    def __init__(self, data: EncodedData, options: ReadOptions) -> None:
        self.data = data
        self.shards = data._shards(options)
        self.shuffle = options.shuffle_buffer > 0 and not options.in_order
        self.window_rows = options.shuffle_buffer
        seed = options.seed
        if seed is None:  # one random seed per reader, fixed from here on
            seed = int(np.random.default_rng().integers(2**62))
        self.seed = seed
        self._cache: dict[tuple[int, int], tuple[np.ndarray, Any]] = {}
        self._lock = threading.Lock()  # `PyDataset` workers share a reader

    def plan(self, epoch: int) -> EpochPlan:
        shards = list(self.shards)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            shards = [shards[i] for i in rng.permutation(len(shards))]
        windows: list[list[Shard]] = []
        total = 0
        for shard in shards:
            if (
                self.shuffle
                and windows
                and total + shard.rows <= self.window_rows
            ):
                windows[-1].append(shard)
                total += shard.rows
            else:  # unshuffled: one shard per window
                windows.append([shard])
                total = shard.rows
        sizes = [sum(s.rows for s in w) for w in windows]
        starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        return EpochPlan(
            epoch, tuple(tuple(w) for w in windows), starts, int(starts[-1])
        )

    def rows(self, plan: EpochPlan, begin: int, end: int) -> np.ndarray:
        """Rows `[begin, end)` of the epoch's stream, `(rows, row_width)`."""
        end = min(end, plan.rows)
        first = int(np.searchsorted(plan.starts, begin, side="right")) - 1
        parts = []
        w = first
        while begin < end:
            w_start, w_end = int(plan.starts[w]), int(plan.starts[w + 1])
            stop = min(end, w_end)
            words, order = self._window(plan, w)
            a, b = begin - w_start, stop - w_start
            if order is None:
                parts.append(words[a:b])
            else:
                parts.append(np.take(words, order[a:b], axis=0))
            begin, w = stop, w + 1
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts)

    def columns(self, plan: EpochPlan, begin: int, end: int) -> np.ndarray:
        """Rows `[begin, end)` transposed: `(row_width, rows)`, contiguous.

        Gathers and transposes `_BLOCK` rows at a time: a block stays in
        cache between the two (1.4x faster than whole batches at 65,536).
        """
        end = min(end, plan.rows)
        out = np.empty((self.data.row_width, max(0, end - begin)), np.int32)
        done = 0
        for piece in range(begin, end, _BLOCK):
            block = self.rows(plan, piece, min(piece + _BLOCK, end))
            out[:, done : done + len(block)] = block.T  # (B, W) -> (W, B)
            done += len(block)
        return out

    def _window(self, plan: EpochPlan, w: int) -> tuple[np.ndarray, Any]:
        key = (plan.epoch, w)
        with self._lock:
            return self._cached(plan, w, key)

    def _cached(
        self, plan: EpochPlan, w: int, key: tuple[int, int]
    ) -> tuple[np.ndarray, Any]:
        if key not in self._cache:
            if len(self._cache) >= 2:  # keep the newest one
                del self._cache[next(iter(self._cache))]
            words = _load(plan.windows[w], self.data.row_width)
            order = None
            if self.shuffle:
                rng = np.random.default_rng([self.seed, plan.epoch, w])
                order = rng.permutation(len(words))
            self._cache[key] = (words, order)
        return self._cache[key]


def _load(shards: Sequence[Shard], width: int) -> np.ndarray:
    """Reads shards into one `(rows, width)` int32 array, sequentially."""
    out = np.empty((sum(s.rows for s in shards), width), WORD)
    row = 0
    for shard in shards:
        view = out[row : row + shard.rows].data.cast("B")
        with open(shard.path, "rb") as f:
            f.seek(HEADER_BYTES)
            if f.readinto(view) != view.nbytes:
                raise ValueError(
                    f"{shard.path}: the file ends before its "
                    f"{shard.rows} rows; it was truncated after it was opened."
                )
        row += shard.rows
    return out.astype(np.int32, copy=False)


def _groups(columns: Sequence[Column]) -> list[tuple[str, list[str], int, int]]:
    """Runs of columns split alike: `(kind, names, first word, stop)`."""
    groups: list[tuple[str, list[str], int, int]] = []
    for c in columns:
        kind = "list" if c.is_list else c.dtype
        if groups and groups[-1][0] == kind and kind != "list":
            last = groups[-1]
            groups[-1] = (kind, [*last[1], c.name], last[2], c.offset + 1)
        else:
            groups.append((kind, [c.name], c.offset, c.offset + c.width))
    return groups


def _check_options(options: ReadOptions) -> None:
    unsupported = {
        "holdout_every": options.holdout_every is not None,
        "with_position": options.with_position,
        "order": options.order is not None,
    }
    for name, given in unsupported.items():
        if given:
            raise ValueError(
                f"Encoded data does not take `{name}`: encode the holdout "
                "rows as their own dataset (`encode_files(..., "
                "holdout=True)`), and resume by batch (`start`)."
            )
