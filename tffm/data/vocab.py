"""One streaming pass over raw data: vocabularies and numeric statistics."""

import collections
import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass
class Scan:
    """What one pass over the training data saw.

    Attributes:
        rows: rows seen.
        positives: sum of the labels.
        counts: `{column: Counter(value -> rows)}` for categorical,
            integer and list columns (missing values not counted).
        numeric: `{column: (count, mean, std)}` of `log(1 + max(x, 0))`
            for log-transformed columns, of `x` otherwise (NaN skipped).
    """

    rows: int
    positives: float
    counts: dict[str, collections.Counter[Any]]
    numeric: dict[str, tuple[int, float, float]]

    def vocabulary(
        self,
        column: str,
        *,
        min_frequency: int = 1,
        max_tokens: int | None = None,
    ) -> list[Any]:
        """Values seen at least `min_frequency` times, most frequent first.

        Ties break by value, so the result is deterministic. At most
        `max_tokens` values are kept.
        """
        items = [
            (value, n)
            for value, n in self.counts[column].items()
            if n >= min_frequency
        ]
        items.sort(key=lambda item: (-item[1], str(item[0])))
        if max_tokens is not None:
            items = items[:max_tokens]
        return [value for value, _ in items]


def scan(
    dataset: Any,
    kinds: Mapping[str, str],
    *,
    log_columns: frozenset[str] | set[str] = frozenset(),
) -> Scan:
    """Counts values and numeric moments over a `(features, label)` dataset.

    Streams batch by batch (memory holds the counters, not the data).

    Args:
        dataset: `tf.data.Dataset` of `(dict, label)` batches, e.g. a
            reader's `Source.dataset`.
        kinds: `{column: kind}` as the readers take.
        log_columns: numeric columns whose statistics are taken after
            `log(1 + max(x, 0))`.

    Returns:
        A `Scan`.
    """
    counts: dict[str, collections.Counter[Any]] = {
        n: collections.Counter() for n, k in kinds.items() if k != "numeric"
    }
    moments = {n: Moments() for n, k in kinds.items() if k == "numeric"}
    rows, positives = 0, 0.0
    for features, labels in dataset.as_numpy_iterator():
        rows += len(labels)
        positives += float(np.sum(labels))
        for name, counter in counts.items():
            values = features[name].reshape(-1)
            if kinds[name] == "integer":
                values = values[values != -1]
            else:
                values = values[values != b""]
            uniques, n = np.unique(values, return_counts=True)
            for value, c in zip(uniques.tolist(), n.tolist(), strict=True):
                counter[_decode(value)] += c
        for name, acc in moments.items():
            x = features[name].astype(np.float64)
            x = x[~np.isnan(x)]
            if name in log_columns:
                x = np.log1p(np.maximum(x, 0.0))
            acc.add(x)
    numeric = {}
    for name, acc in moments.items():
        std = acc.std()
        if acc.count == 0 or std == 0.0:
            # x' = (x - mean) / 1 is then 0 on every training row: the
            # column adds nothing, which is right, but say so.
            warnings.warn(
                f"Feature {name!r}: "
                + (
                    "no value in the training data"
                    if acc.count == 0
                    else f"every training value is {acc.mean:g}"
                )
                + "; it will not affect the model (std set to 1).",
                stacklevel=2,
            )
            std = 1.0
        numeric[name] = (acc.count, acc.mean, std)
    return Scan(rows, positives, counts, numeric)


class Moments:
    """Count, mean and variance of a stream of batches, without cancellation.

    Each batch's mean and sum of squared deviations are taken two-pass, then
    merged with Chan et al.'s update, so a large mean never cancels the
    variance (as `E[x^2] - E[x]^2` does in floating point).
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def add(self, x: np.ndarray) -> None:
        """Adds a batch of float64 values (no NaN)."""
        n = int(x.size)
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(np.square(x - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def std(self) -> float:
        """Population standard deviation (0 for no values)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


def _decode(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value
