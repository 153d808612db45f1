"""Evaluation metrics in numpy (no TensorFlow needed)."""

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; ties count one half (Mann-Whitney U).

    Args:
        labels: `(num_rows,)` of 0/1.
        scores: `(num_rows,)` of real scores.

    Returns:
        The AUC as a float; NaN if only one class is present.
    """
    y = np.asarray(labels).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(
            "`labels` and `scores` must have the same length. Received: "
            f"labels.shape={y.shape}, scores.shape={s.shape}"
        )
    num_pos = int(y.sum())
    num_neg = len(y) - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    # Average 1-based ranks over runs of tied scores.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (0.5 * (2 * ends - counts + 1))[inverse]
    u = ranks[y].sum() - num_pos * (num_pos + 1) / 2.0
    return float(u / (num_pos * num_neg))


def log_loss(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(
        np.asarray(probabilities, np.float64).reshape(-1), 1e-7, 1 - 1e-7
    )
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(targets: ArrayLike, predictions: ArrayLike) -> float:
    """Root mean squared error."""
    t = np.asarray(targets, np.float64).reshape(-1)
    p = np.asarray(predictions, np.float64).reshape(-1)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(targets: ArrayLike, predictions: ArrayLike) -> float:
    """Mean absolute error."""
    t = np.asarray(targets, np.float64).reshape(-1)
    p = np.asarray(predictions, np.float64).reshape(-1)
    return float(np.mean(np.abs(t - p)))


def bootstrap_std(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: ArrayLike,
    predictions: ArrayLike,
    *,
    num_samples: int = 200,
    seed: int = 0,
) -> float:
    """Standard deviation of `metric` over bootstrap resamples of the rows."""
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(predictions).reshape(-1)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_samples):
        rows = rng.integers(0, len(y), len(y))
        values.append(metric(y[rows], p[rows]))
    return float(np.nanstd(values))


def calibration_table(
    labels: ArrayLike, probabilities: ArrayLike, *, num_bins: int = 10
) -> list[dict[str, float]]:
    """Reliability table: equal-width probability bins, observed rates.

    Args:
        labels: `(num_rows,)` of 0/1.
        probabilities: `(num_rows,)` predicted probabilities.
        num_bins: int. Bins over [0, 1].

    Returns:
        One dict per non-empty bin: `low`, `high`, `rows`, `mean_probability`
        (average prediction) and `observed_rate` (average label). A
        calibrated model has the two equal in every bin.
    """
    y = np.asarray(labels, np.float64).reshape(-1)
    p = np.asarray(probabilities, np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(
        np.searchsorted(edges, p, side="right") - 1, 0, num_bins - 1
    )
    table = []
    for b in range(num_bins):
        rows = index == b
        if rows.any():
            table.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "rows": float(rows.sum()),
                    "mean_probability": float(p[rows].mean()),
                    "observed_rate": float(y[rows].mean()),
                }
            )
    return table


def expected_calibration_error(
    labels: ArrayLike, probabilities: ArrayLike, *, num_bins: int = 10
) -> float:
    """Row-weighted mean |observed rate - mean probability| over the bins."""
    table = calibration_table(labels, probabilities, num_bins=num_bins)
    total = sum(b["rows"] for b in table)
    return float(
        sum(
            b["rows"] * abs(b["observed_rate"] - b["mean_probability"])
            for b in table
        )
        / total
    )
