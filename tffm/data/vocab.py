"""One streaming pass over raw data: vocabularies and numeric statistics."""

import collections
import dataclasses
import math
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
    counts: dict[str, collections.Counter]
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
    counts = {
        n: collections.Counter() for n, k in kinds.items() if k != "numeric"
    }
    sums = {n: [0, 0.0, 0.0] for n, k in kinds.items() if k == "numeric"}
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
        for name, acc in sums.items():
            x = features[name].astype(np.float64)
            x = x[~np.isnan(x)]
            if name in log_columns:
                x = np.log1p(np.maximum(x, 0.0))
            acc[0] += x.size
            acc[1] += float(x.sum())
            acc[2] += float((x * x).sum())
    numeric = {}
    for name, (n, s, ss) in sums.items():
        mean = s / n if n else 0.0
        var = max(ss / n - mean * mean, 0.0) if n else 0.0
        numeric[name] = (n, mean, math.sqrt(var) or 1.0)
    return Scan(rows, positives, counts, numeric)


def _decode(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value
