"""Raw values -> the feeds of a tffm raw-input ONNX graph (no TensorFlow).

The raw-input ONNX graph does every lookup itself except hashing, which
standard ONNX cannot do the way TensorFlow does. For hashed features the
graph takes FarmHash `fingerprint64` values (as int64 bits) and applies
`1 + fingerprint % hash_bins` itself; this module computes the fingerprints
of all hashed columns together in one vectorized call
(`serving.fingerprint`, equal to TensorFlow's `to_hash_bucket_fast` hash).

Two ways in:
- `OnnxFeed.__call__(raw)`: any raw values (lists, numpy arrays, bytes),
  checked by `tffm.features.check_raw`, so errors name the feature;
- `OnnxFeed.columns(columns)`: numpy columns that already have the raw
  dtypes (`str` object or `U` arrays, int64, float32); only names, ranks,
  dtypes and batch sizes are checked, no per-element work besides hashing.
`__call__` takes the columnar path by itself whenever the values allow it.
"""

import itertools
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.fingerprint import SCALAR_THRESHOLD
from serving.fingerprint import fingerprint64
from tffm import constants
from tffm.features import Feature
from tffm.features import check_raw
from tffm.features import features_from_json

_KINDS = {"string": "OU", "int64": "i", "float32": "f"}
_DTYPES: dict[str, Any] = {
    "int64": np.dtype(np.int64),
    "float32": np.dtype(np.float32),
}


class OnnxFeed:
    """Checks raw feature values and builds the ONNX graph's feeds.

    Args:
        features: the model's feature spec (as stored in the ONNX metadata
            under `tffm.features`).
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = tuple(features)
        self.names = [f.name for f in self.features]
        self.hashed = [
            f.name for f in self.features if getattr(f, "hash_bins", None)
        ]
        self._hashed_set = frozenset(self.hashed)
        # (name, raw dtype, rank) per feature: what `columns` checks.
        self._plan = [(f.name, f.dtype, 1 + len(f.shape)) for f in features]
        # The fast path's groups: flat hashed strings, flat numbers by
        # dtype; the rest goes one feature at a time.
        self._flat_hashed = [
            n for n, d, r in self._plan if r == 1 and n in self._hashed_set
        ]
        self._flat_numeric = [
            (names, dtype)
            for dtype in ("float32", "int64")
            if (names := [n for n, d, r in self._plan if r == 1 and d == dtype])
        ]
        grouped = set(self._flat_hashed).union(
            *(names for names, _ in self._flat_numeric)
        )
        self._rest = [p for p in self._plan if p[0] not in grouped]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "OnnxFeed":
        """The feed of an ONNX file, from its `metadata_props`."""
        if constants.ONNX_FEATURES not in metadata:
            raise ValueError(
                f"The ONNX file has no {constants.ONNX_FEATURES!r} metadata; "
                "it was not written by tffm's raw-input export."
            )
        if metadata.get(constants.ONNX_INPUTS, "raw") != "raw":
            raise ValueError(
                "The ONNX file takes encoded ids (an `.ids.onnx` core), not "
                "raw values; use the raw-input `.onnx` written beside it."
            )
        hash_name = metadata.get(constants.ONNX_HASH, constants.HASH_NAME)
        if hash_name != constants.HASH_NAME:
            raise ValueError(f"Unsupported hash {hash_name!r}.")
        return cls(features_from_json(metadata[constants.ONNX_FEATURES]))

    def __call__(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Feeds for any raw values; errors name the feature.

        Args:
            raw: `{feature_name: values}`: lists or arrays, `(batch_size,)`
                or `(batch_size, list_length)` per feature.

        Returns:
            `{input_name: numpy array}` for `InferenceSession.run`.
        """
        feeds = self._fast(raw)
        if feeds is None:  # unusual values: the full check says what
            return self.columns(check_raw(self.features, raw))
        return feeds

    def _fast(self, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        """Vectorized feeds of ordinary values; None where `check_raw` looks.

        The usual request (flat lists or 1-D arrays: hashed strings and
        numbers) costs a few C-level calls whatever the number of
        features: every hashed string of the request is fingerprinted in
        one call, the flat numeric columns of one dtype are converted and
        checked for infinities as one `(num_features, batch_size)` array.
        Other features (vocabulary strings, lists) go one by one. Anything
        unusual (bytes, wrong types, ragged lists, missing or extra names,
        unequal batch sizes, infinities) returns None and the caller runs
        the full check, whose errors name the feature.
        """
        if len(raw) != len(self._plan):
            return None
        try:
            feeds = self._flat_groups(raw)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if feeds is None:
            return None
        size = len(next(iter(feeds.values()))) if feeds else -1
        strings: list[Any] = []
        hashed: list[tuple[str, tuple[int, ...]]] = []
        for name, dtype, rank in self._rest:
            value = raw.get(name)
            if dtype == "string":
                if isinstance(value, np.ndarray):
                    if value.ndim != rank or value.dtype.kind not in "OU":
                        return None
                    shape = value.shape
                    flat = value.reshape(-1).tolist()
                elif isinstance(value, list) and value:
                    if rank == 1:
                        flat, shape = value, (len(value),)
                    else:
                        flat = _flatten(value)  # type: ignore[assignment]
                        if flat is None:
                            return None
                        shape = (len(value), len(flat) // len(value))
                else:
                    return None
                if name in self._hashed_set:
                    strings += flat
                    hashed.append((name, shape))
                else:
                    if not _all_str(flat):
                        return None
                    array = np.empty(len(flat), dtype=object)
                    array[:] = flat
                    feeds[name] = array.reshape(shape)
            else:
                try:
                    array = np.asarray(value)
                except ValueError:  # ragged
                    return None
                kinds = "iu" if dtype == "int64" else "fiu"
                if array.ndim != rank or array.dtype.kind not in kinds:
                    return None
                with np.errstate(over="ignore"):
                    array = np.asarray(array, _DTYPES[dtype])
                if dtype == "float32" and np.isinf(array).any():
                    return None  # refused, by name, in `check_raw`
                feeds[name] = array
                shape = array.shape
            if size < 0:
                size = shape[0]
            elif shape[0] != size:
                return None
        if hashed:
            try:
                hashes = _fingerprints(strings)
            except (TypeError, ValueError):  # bytes, ints, lone surrogates
                return None
            offset = 0
            for name, shape in hashed:
                count = shape[0] * (shape[1] if len(shape) > 1 else 1)
                feeds[name] = hashes[offset : offset + count].reshape(shape)
                offset += count
        return feeds

    def _flat_groups(self, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        """Feeds of the flat hashed and numeric features, a group at a time."""
        feeds: dict[str, Any] = {}
        size = -1
        if self._flat_hashed:
            columns = [_as_list(raw[name]) for name in self._flat_hashed]
            lengths = set(map(len, columns))
            if len(lengths) != 1:
                return None
            size = lengths.pop()
            strings = list(itertools.chain.from_iterable(columns))
            if size == 0:
                return None
            hashes = _fingerprints(strings).reshape(len(columns), size)
            for row, name in enumerate(self._flat_hashed):
                feeds[name] = hashes[row]  # (B,) rows of one (F, B) array
        for names, dtype in self._flat_numeric:
            values = [raw[name] for name in names]
            if all(type(v) is list for v in values):
                types = set(map(type, itertools.chain.from_iterable(values)))
                allowed = {int} if dtype == "int64" else {int, float}
                if not types <= allowed:
                    return None
                with np.errstate(over="ignore"):
                    block = np.array(values, dtype=_DTYPES[dtype])
            elif all(
                isinstance(v, np.ndarray) and v.dtype == _DTYPES[dtype]
                for v in values
            ):
                block = np.stack(values)
            else:
                return None
            if block.ndim != 2 or (size >= 0 and block.shape[1] != size):
                return None
            size = block.shape[1]
            if dtype == "float32" and np.isinf(block).any():
                return None  # refused, by name, in `check_raw`
            for row, name in enumerate(names):
                feeds[name] = block[row]  # (B,) rows of one (F, B) array
        return feeds

    def columns(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Feeds for numpy columns that already have the raw dtypes.

        The columnar fast path: string features as `str` object arrays (or
        numpy `U` arrays), integer-vocabulary features as int64, numeric
        features as float32, each `(batch_size,)` or
        `(batch_size, list_length)`. Names, ranks, dtypes and batch sizes
        are checked (errors name the feature); values are not copied except
        to hash.

        Args:
            columns: `{feature_name: numpy array}`.

        Returns:
            `{input_name: numpy array}` for `InferenceSession.run`.
        """
        if len(columns) != len(self._plan) or any(
            name not in columns for name in self.names
        ):
            # The shared check words the missing / unknown names.
            check_raw(self.features, {k: () for k in columns})
        feeds: dict[str, Any] = {}
        batch_size = None
        for name, dtype, rank in self._plan:
            value = columns[name]
            if (
                not isinstance(value, np.ndarray)
                or value.ndim != rank
                or value.dtype.kind not in _KINDS[dtype]
                or (dtype != "string" and value.dtype != _DTYPES[dtype])
            ):
                raise ValueError(
                    f"Feature {name!r}: the columnar path takes a "
                    f"{rank}-D numpy array of {_describe(dtype)}. Received "
                    f"{_received(value)}"
                )
            if batch_size is None:
                batch_size = value.shape[0]
            elif value.shape[0] != batch_size:
                raise ValueError(
                    f"Feature {name!r}: batch size {value.shape[0]} "
                    f"differs from the other features' {batch_size}."
                )
            if dtype == "float32" and np.isinf(value).any():
                check_raw(
                    [f for f in self.features if f.name == name], {name: value}
                )
            feeds[name] = value
        if self.hashed:
            self._hash(feeds)
        for name, dtype, _ in self._plan:
            if dtype == "string" and feeds[name].dtype.kind == "U":
                feeds[name] = feeds[name].astype(object)  # ORT takes objects
        return feeds

    def _hash(self, feeds: dict[str, Any]) -> None:
        """Replaces hashed columns by their fingerprints, in one call."""
        columns = [
            np.asarray(feeds[name], dtype=object) for name in self.hashed
        ]
        flat = np.concatenate([c.reshape(-1) for c in columns])
        try:
            hashes = fingerprint64(flat)
        except (TypeError, ValueError):  # find and name the bad column
            for name, column in zip(self.hashed, columns, strict=True):
                try:
                    fingerprint64(column)
                except (TypeError, ValueError) as error:
                    raise ValueError(
                        f"Feature {name!r} takes strings (valid Unicode). "
                        f"Received: {error}"
                    ) from None
            raise
        offset = 0
        for name, column in zip(self.hashed, columns, strict=True):
            feeds[name] = hashes[offset : offset + column.size].reshape(
                column.shape
            )
            offset += column.size


def _flatten(rows: list[Any]) -> list[Any] | None:
    """Row-major values of a rectangular list of lists, else None."""
    if not all(isinstance(r, list) for r in rows):
        return None
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        return None
    return [v for r in rows for v in r]


def _as_list(value: Any) -> list[Any]:
    """A flat string column as a list (numpy 1-D arrays of str / objects)."""
    if type(value) is list:
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1:
        if value.dtype.kind in "OU":
            return value.tolist()  # type: ignore[no-any-return]
    raise TypeError("not a flat string column")


def _fingerprints(strings: list[Any]) -> np.ndarray:
    """`fingerprint64` of `str` values; TypeError for any other type.

    The vectorized hash joins the strings with `str.join`, which checks
    every type in C; only the per-string path for a few values (which
    would take bytes) needs the scan first.
    """
    if len(strings) < SCALAR_THRESHOLD and not _all_str(strings):
        raise TypeError("not all values are str")
    return fingerprint64(strings)


def _all_str(values: list[Any]) -> bool:
    types = set(map(type, values))  # C-level loop, no per-row bytecode
    return types == {str}


def _describe(dtype: str) -> str:
    return {
        "string": "str (object or U dtype)",
        "int64": "int64",
        "float32": "float32",
    }[dtype]


def _received(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"dtype {value.dtype}, shape {value.shape}"
    return f"{type(value).__name__}"
