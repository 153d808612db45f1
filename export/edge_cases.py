"""Raw-value batches that probe the corners of every feature kind."""

from collections.abc import Sequence
from typing import Any

import numpy as np

LONG_STRING = "long-" + "x" * 10_000
UNICODE = "日本語 ✓ ünïcödé 🚀"
_STRING_EDGES = ("", "never-seen-value", UNICODE, LONG_STRING, " ")
_INT_EDGES = (-1, 0, 2**62, -(2**62), 123_456_789)
_NUMERIC_EDGES = (
    0.0,
    -0.0,
    -1.0,
    -1e6,
    1e6,
    1e9,
    3.0e38,  # near float32's largest: clipped, never an overflow to NaN
    -3.0e38,
    1e-30,
    float("nan"),
)


def edge_case_batch(
    features: Sequence[Any], batch_size: int, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Raw values for `features`: edge cases first, then ordinary values.

    Categorical: missing, out-of-vocabulary, unicode, 10,000-character and
    whitespace strings (for integer vocabularies: -1, 0, +-2^62); numeric:
    zero, negatives, 1e6 / 1e9 / +-3e38, tiny and NaN; lists: empty, partly
    padded, all out-of-vocabulary and longer than `max_len`. Remaining rows draw
    known values (and some random unknown ones).

    Args:
        features: tffm features.
        batch_size: int. Rows (>= 1); edge cases are cut to fit.
        seed: int. Seed of the ordinary rows.

    Returns:
        dict `{feature_name: numpy array}`, object arrays for strings.
    """
    rng = np.random.default_rng(seed)
    batch = {}
    for feature in features:
        kind = type(feature).__name__
        if kind == "Numeric":
            batch[feature.name] = _fill(
                _NUMERIC_EDGES,
                batch_size,
                lambda n: rng.lognormal(0.0, 1.5, n) - 1.0,
                np.float32,
            )
            continue
        pool = _pool(feature, rng)
        edges = _INT_EDGES if feature.dtype == "int64" else _STRING_EDGES
        dtype = np.int64 if feature.dtype == "int64" else object
        if kind == "MultiCategorical":
            batch[feature.name] = _lists(feature, edges, pool, batch_size, rng)
        else:
            batch[feature.name] = _fill(
                tuple(pool[:2]) + edges,
                batch_size,
                lambda n, p=pool: p[rng.integers(0, len(p), n)],
                dtype,
            )
    return batch


def _pool(feature: Any, rng: np.random.Generator) -> np.ndarray:
    if feature.vocabulary is not None:
        return np.array(
            list(feature.vocabulary),
            dtype=object if feature.dtype == "string" else np.int64,
        )
    return np.array([f"h{k}" for k in rng.integers(0, 10**6, 1000)], object)


def _fill(edges: tuple[Any, ...], n: int, draw: Any, dtype: Any) -> np.ndarray:
    head = np.array(edges[:n], dtype=dtype)
    tail = np.asarray(draw(n - len(head))).astype(dtype)
    return np.concatenate([head, tail])


def _lists(
    feature: Any,
    edges: tuple[Any, ...],
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    pad = -1 if feature.dtype == "int64" else ""
    width = feature.max_len + 2  # some rows longer than max_len
    dtype = np.int64 if feature.dtype == "int64" else object
    out = np.full((n, width), pad, dtype=dtype)
    special = [
        [],  # empty list
        list(pool[:1]),
        [v for v in edges if v != pad][:width],  # all unknown
        list(pool[rng.integers(0, len(pool), width)]),  # over-long
    ]
    for row in range(n):
        if row < len(special):
            values = special[row]
        else:
            values = list(
                pool[
                    rng.integers(
                        0, len(pool), rng.integers(0, feature.max_len + 1)
                    )
                ]
            )
        out[row, : len(values)] = values
    return out
