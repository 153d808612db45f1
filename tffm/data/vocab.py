"""One streaming pass over raw data: vocabularies and numeric statistics."""

import collections
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterable
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
        return choose_vocabulary(
            self.counts[column].items(),
            min_frequency=min_frequency,
            max_tokens=max_tokens,
        )


def choose_vocabulary(
    counts: Iterable[tuple[Any, int]],
    *,
    min_frequency: int = 1,
    max_tokens: int | None = None,
) -> list[Any]:
    """`(value, count)` pairs -> the vocabulary, as `Scan.vocabulary` says.

    Values seen at least `min_frequency` times, most frequent first, ties
    by `str(value)`; at most `max_tokens`.
    """
    items = [(value, n) for value, n in counts if n >= min_frequency]
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
    return finish_scan(
        scan_partial(dataset, kinds, log_columns=log_columns), kinds
    )


@dataclasses.dataclass
class PartialScan:
    """What a pass over part of the data saw; partials merge exactly.

    Attributes:
        rows: rows seen.
        labels: `Moments` of the labels (their sum is `positives`).
        counts: `{column: Counter}` as in `Scan`.
        moments: `{column: Moments}` of the numeric columns.
    """

    rows: int
    labels: "Moments"
    counts: dict[str, collections.Counter[Any]]
    moments: dict[str, "Moments"]

    def merge(self, other: "PartialScan") -> "PartialScan":
        """Adds `other` in place (any order gives the same result)."""
        self.rows += other.rows
        self.labels.merge(other.labels)
        for name, counter in other.counts.items():
            self.counts[name].update(counter)
        for name, acc in other.moments.items():
            self.moments[name].merge(acc)
        return self


def scan_partial(
    dataset: Any,
    kinds: Mapping[str, str],
    *,
    log_columns: frozenset[str] | set[str] = frozenset(),
) -> PartialScan:
    """The counts and moments of `dataset` (see `scan`), still mergeable."""
    part = PartialScan(
        rows=0,
        labels=Moments(),
        counts={
            n: collections.Counter() for n, k in kinds.items() if k != "numeric"
        },
        moments={n: Moments() for n, k in kinds.items() if k == "numeric"},
    )
    for features, labels in dataset.as_numpy_iterator():
        part.rows += len(labels)
        part.labels.add(np.asarray(labels, np.float64).reshape(-1))
        for name, counter in part.counts.items():
            values = features[name].reshape(-1)
            if kinds[name] == "integer":
                values = values[values != -1]
            else:
                values = values[values != b""]
            uniques, n = np.unique(values, return_counts=True)
            for value, c in zip(uniques.tolist(), n.tolist(), strict=True):
                counter[_decode(value)] += c
        for name, acc in part.moments.items():
            x = features[name].astype(np.float64)
            x = x[~np.isnan(x)]
            if name in log_columns:
                x = np.log1p(np.maximum(x, 0.0))
            acc.add(x)
    return part


def finish_scan(part: PartialScan, kinds: Mapping[str, str]) -> Scan:
    """The `Scan` of merged partials (warns about constant columns)."""
    numeric = {}
    for name, acc in part.moments.items():
        mean, std = acc.mean(), acc.std()
        if acc.count == 0 or std == 0.0:
            # x' = (x - mean) / 1 is then 0 on every training row: the
            # column adds nothing, which is right, but say so.
            warnings.warn(
                f"Feature {name!r}: "
                + (
                    "no value in the training data"
                    if acc.count == 0
                    else f"every training value is {mean:g}"
                )
                + "; it will not affect the model (std set to 1).",
                stacklevel=3,
            )
            std = 1.0
        numeric[name] = (acc.count, mean, std)
    positives = part.labels.total()
    return Scan(part.rows, positives, part.counts, numeric)


def write_scan(
    scanned: Scan,
    directory: str,
    vocabularies: Mapping[str, list[Any]],
) -> None:
    """Writes `vocab/<column>.txt` and `statistics.json` under `directory`.

    The one writer of a scan's files, whichever pass made it (the local
    scan of `tffm train`, `tffm.data.beam_scan`): one value per line, most
    frequent first; statistics as JSON with sorted keys.

    Args:
        scanned: the `Scan`.
        directory: str. Output folder (created if needed).
        vocabularies: `{column: values}` to write (chosen from the scan's
            counts by `Scan.vocabulary`).
    """
    vocab_dir = os.path.join(directory, "vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    for name, values in vocabularies.items():
        with open(os.path.join(vocab_dir, f"{name}.txt"), "w") as f:
            f.write("".join(f"{v}\n" for v in values))
    statistics = {
        "rows": scanned.rows,
        "positives": scanned.positives,
        "numeric": {
            name: {"count": count, "mean": mean, "std": std}
            for name, (count, mean, std) in scanned.numeric.items()
        },
    }
    with open(os.path.join(directory, "statistics.json"), "w") as f:
        json.dump(statistics, f, indent=2, sort_keys=True)
        f.write("\n")


class Moments:
    """Count, mean and variance of a stream, exact and order-free.

    Sums of `x` and `x^2` are kept exactly, as integers: each float64 is
    `M * 2^E` with an integer `|M| < 2^53`, and `M` and `M^2` are summed
    per exponent in 18-bit limbs (no int64 overflow below 2^25 values per
    batch). Mean and variance are rounded once, at the end, from the exact
    sums. So any split of the data into batches, files or workers, merged
    in any order, gives the same bits: what lets the Beam scan write the
    local scan's statistics byte for byte. (Chan et al.'s float merge,
    also free of cancellation, depends on the batch boundaries in the last
    bits.)
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0  # sum of x, in units of 2^-_SHIFT
        self._squares = 0  # sum of x^2, in units of 2^-(2 * _SHIFT)
        # Per exponent and limb, int64 partial sums not yet in the above.
        self._limbs = np.zeros((3, _EXPONENTS), np.int64)
        self._square_limbs = np.zeros((5, 2 * _EXPONENTS), np.int64)
        self._pending = 0

    def add(self, x: np.ndarray) -> None:
        """Adds a batch of finite float64 values."""
        x = np.asarray(x, np.float64).reshape(-1)
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError("Moments take finite values only.")
        if self._pending + x.size >= _FLUSH:
            self._flush()
        mantissa, exponent = np.frexp(x)  # x = m * 2^e, 0.5 <= |m| < 1
        whole = np.ldexp(mantissa, 53).astype(np.int64)  # |M| < 2^53
        shift = exponent.astype(np.int64) - 53 + _SHIFT  # >= 0
        sign = np.sign(whole)
        c = [(np.abs(whole) >> (_LIMB * k)) & _MASK for k in range(3)]
        for k in range(3):
            np.add.at(self._limbs[k], shift, sign * c[k])
        # M^2 = sum_k 2^(18k) sum_{i+j=k} c_i c_j, each term < 3 * 2^36.
        squares = (
            c[0] * c[0],
            2 * c[0] * c[1],
            2 * c[0] * c[2] + c[1] * c[1],
            2 * c[1] * c[2],
            c[2] * c[2],
        )
        for k in range(5):
            np.add.at(self._square_limbs[k], 2 * shift, squares[k])
        self._pending += int(x.size)
        self.count += int(x.size)

    def _flush(self) -> None:
        """Moves the int64 partial sums into the exact integers."""
        for sums, attr in (
            (self._limbs, "_sum"),
            (self._square_limbs, "_squares"),
        ):
            total = getattr(self, attr)
            for k, row in enumerate(sums):
                for e in np.flatnonzero(row).tolist():
                    total += int(row[e]) << (e + _LIMB * k)
            setattr(self, attr, total)
            sums[:] = 0
        self._pending = 0

    def merge(self, other: "Moments") -> None:
        """Adds `other`'s values (`other` is left as it is)."""
        if self._pending + other._pending >= _FLUSH:
            self._flush()  # both stay below _FLUSH, so the sum fits
        self._limbs += other._limbs
        self._square_limbs += other._square_limbs
        self._pending += other._pending
        self.count += other.count
        self._sum += other._sum
        self._squares += other._squares

    def total(self) -> float:
        """The sum, correctly rounded."""
        self._flush()
        return self._sum / (1 << _SHIFT)

    def mean(self) -> float:
        """The mean, correctly rounded (0 for no values)."""
        self._flush()
        return self._sum / (self.count << _SHIFT) if self.count else 0.0

    def std(self) -> float:
        """Population standard deviation (0 for no values)."""
        if not self.count:
            return 0.0
        self._flush()
        # var = (n * sum(x^2) - sum(x)^2) / n^2, exact until this division.
        numerator = self.count * self._squares - self._sum * self._sum
        try:
            variance = numerator / ((self.count * self.count) << 2 * _SHIFT)
        except OverflowError:  # values near the float64 limit
            return math.inf
        return math.sqrt(variance)


# float64 values are M * 2^E with E >= -1074 - 52; shifting by this makes
# every exponent non-negative (and below _EXPONENTS).
_SHIFT = 1126
_EXPONENTS = 2200
_LIMB = 18
_MASK = (1 << _LIMB) - 1
# int64 sums of terms < 3 * 2^36 stay exact for fewer than 2^25 values.
_FLUSH = 1 << 24


def _decode(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value
