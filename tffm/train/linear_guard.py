"""The guard: a linear model fit beside the trained one, on the same rows.

`linear_guard` fits logistic regression (binary tasks) or ridge regression
on the features the model reads (one weight per id, a numeric's
standardized value times its weight), on at most `MAX_ROWS` training
rows, and scores it and the trained model on the same validation rows.
When the model scores below it, `metrics.json` says so and what to try:
a model that loses to the simplest baseline should not be saved silently.

The fit is numpy only: an accelerated majorize-minimize descent. With at
most `s` nonzero entries in a row, `X^T D X <= s * diag(X^T D X)` (Cauchy-
Schwarz), and `D <= 1/4` for the logistic loss (`1` for squared error), so
a step of `g / M` with `M = c * s * diag(X^T X) / n + l2` never overshoots;
Nesterov momentum with a gradient restart speeds it up. The L2 goes down
a short path, each fit warm-started from the last, and the one with the
best validation score is kept (the trained model's epoch is chosen on the
same rows).
"""

import logging
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm import metrics
from tffm.features import NUMERIC_BOUND
from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric

logger = logging.getLogger(__name__)

# Training rows the linear model fits on (a larger data set is subsampled
# by its shuffled order: the first `MAX_ROWS` rows read).
MAX_ROWS = 100_000
# Validation rows both models are scored on.
MAX_VALIDATION_ROWS = 100_000
# The L2 path (on the mean loss), strongest first.
L2_PATH = (1e-2, 3e-3, 1e-3, 3e-4)
# Descent steps per L2 at most, and the relative change that stops one.
MAX_STEPS = 60
TOLERANCE = 1e-4
_METRIC = {"binary": "auc", "regression": "rmse"}


def linear_guard(
    model: Any,
    features: Sequence[Feature],
    task: str,
    training: Iterable[Any],
    validation: Iterable[Any],
    *,
    model_name: str = "model",
) -> dict[str, Any]:
    """Fits the linear model and compares it with `model`: the record.

    Args:
        model: the trained Keras model (its chosen epoch).
        features: the feature spec.
        task: `"binary"` or `"regression"`.
        training: encoded `(features, label)` training batches.
        validation: encoded `(features, label)` validation batches.
        model_name: str. What the model is, for the advice (`"deepfm"`).

    Returns:
        A dict for `metrics.json`: both scores on the same rows, their
        bootstrap standard deviations, `below` (whether the model scores
        worse than the linear model), and `advice` when it does.
    """
    import keras  # deferred: Keras

    design = _Design(features)
    x_train, y_train = design.read(training, MAX_ROWS)
    ids, values, labels, outputs = [], [], [], []
    rows = 0
    for batch, y in validation:
        i, v = design.encode(batch)
        out = model(batch, training=False)  # (B, 1)
        outputs.append(keras.ops.convert_to_numpy(out)[:, 0])
        ids.append(i)
        values.append(v)
        labels.append(np.asarray(y, np.float64).reshape(-1))
        rows += len(labels[-1])
        if rows >= MAX_VALIDATION_ROWS:
            break
    x_valid = (np.concatenate(ids), np.concatenate(values))
    y_valid = np.concatenate(labels)
    predicted = np.concatenate(outputs).astype(np.float64)
    l2, weights = _fit_path(x_train, y_train, x_valid, y_valid, task, design)
    linear = _predict(weights, x_valid, task)
    key = _METRIC[task]
    fn = metrics.roc_auc if task == "binary" else metrics.rmse
    ours, theirs = fn(y_valid, predicted), fn(y_valid, linear)
    # How far the model is behind, in the metric's better direction.
    shortfall = theirs - ours if task == "binary" else ours - theirs
    sd = metrics.bootstrap_std(fn, y_valid, linear)
    record: dict[str, Any] = {
        "linear_model": (
            "logistic regression" if task == "binary" else "ridge regression"
        )
        + " on the same encoded features, L2 chosen on these rows",
        "metric": key,
        "model": ours,
        "model_std": metrics.bootstrap_std(fn, y_valid, predicted),
        "linear": theirs,
        "linear_std": sd,
        "shortfall": shortfall,
        "shortfall_in_sd": shortfall / sd if sd > 0 else 0.0,
        "below": bool(shortfall > 0),
        "l2": l2,
        "training_rows": int(len(y_train)),
        "rows": int(len(y_valid)),
    }
    if record["below"]:
        record["advice"] = advice(model_name, task)
    return record


def advice(model_name: str, task: str) -> list[str]:
    """What to try when `model_name` scores below the linear model."""
    tips = {
        "deepfm": [
            "--model lr (the linear model is the better one here), or "
            "--model fm",
            "more training rows, or a rarer value sharing a row: "
            "--min-frequency 3 (or 10)",
            "stronger regularization: --embeddings-l2 0.03, --dropout 0.5, "
            "--embedding-dim 8",
        ],
        "fm": [
            "--model lr (the linear model is the better one here)",
            "--min-frequency 10, --embeddings-l2 0.03, --embedding-dim 8",
        ],
        "lr": [
            "a longer or faster fit: --epochs 80, --learning-rate 0.03, "
            "--patience 8",
        ],
    }
    return tips.get(model_name, tips["fm"])


def describe(record: dict[str, Any]) -> str:
    """One paragraph for the end of `tffm train`."""
    key = record["metric"]
    return (
        f"the chosen epoch's validation {key} {record['model']:.4f} is "
        f"{'below' if key == 'auc' else 'worse than'} a linear model's "
        f"{record['linear']:.4f} on the same {record['rows']:,} rows "
        f"(shortfall {abs(record['shortfall']):.4f}, "
        f"{abs(record['shortfall_in_sd']):.1f} bootstrap sd). Try: "
        + "; ".join(record.get("advice", []))
        + ". metrics.json holds it under `linear_baseline`."
    )


class _Design:
    """A sparse design matrix of encoded batches: `(ids, values)` per row.

    Each row has one column per categorical, one per listed id (padding
    has value 0) and one per numeric, then a bias column of 1s; `ids` and
    `values` are `(rows, slots)` arrays.
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = list(features)
        self.offsets: dict[str, int] = {}
        total = 0
        for f in self.features:
            self.offsets[f.name] = total
            total += f.num_ids
        self.bias = total
        self.columns = total + 1

    def encode(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        ids, values = [], []
        for f in self.features:
            x = np.asarray(batch[f.name])
            offset = self.offsets[f.name]
            if isinstance(f, Numeric):
                values.append(_standardized(f, x)[:, None])  # (B, 1)
                ids.append(np.full((len(x), 1), offset, np.int64))
            elif isinstance(f, MultiCategorical):
                x = x.reshape(len(x), -1)  # (B, L)
                keep = (x > 0).astype(np.float64)  # id 0: padding
                if f.combiner == "mean":
                    keep /= np.maximum(keep.sum(1, keepdims=True), 1.0)
                values.append(keep)
                ids.append(x.astype(np.int64) + offset)
            else:
                assert isinstance(f, Categorical)  # noqa: S101 (exhaustive)
                x = x.reshape(-1)
                values.append(np.ones((len(x), 1)))
                ids.append(x.astype(np.int64)[:, None] + offset)
        n = len(values[0])
        ids.append(np.full((n, 1), self.bias, np.int64))
        values.append(np.ones((n, 1)))
        return np.concatenate(ids, 1), np.concatenate(values, 1)

    def read(
        self, batches: Iterable[Any], limit: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        ids, values, labels = [], [], []
        rows = 0
        for batch, y in batches:
            i, v = self.encode(batch)
            ids.append(i)
            values.append(v)
            labels.append(np.asarray(y, np.float64).reshape(-1))
            rows += len(labels[-1])
            if rows >= limit:
                break
        x = (np.concatenate(ids)[:limit], np.concatenate(values)[:limit])
        return x, np.concatenate(labels)[:limit]


def _standardized(feature: Numeric, values: np.ndarray) -> np.ndarray:
    """The value the model uses for a `Numeric` (see `tffm.Numeric`)."""
    x = np.asarray(values, np.float64).reshape(-1)
    if feature.transform == "log1p":
        x = np.log1p(np.maximum(x, 0.0))
    x = np.clip((x - feature.mean) / feature.std, -NUMERIC_BOUND, NUMERIC_BOUND)
    return np.where(np.isnan(x), 0.0, x)


def _fit_path(
    x_train: tuple[np.ndarray, np.ndarray],
    y_train: np.ndarray,
    x_valid: tuple[np.ndarray, np.ndarray],
    y_valid: np.ndarray,
    task: str,
    design: _Design,
) -> tuple[float, np.ndarray]:
    """The L2 on `L2_PATH` with the best validation score, and its weights."""
    weights = np.zeros(design.columns)
    mean = float(np.mean(y_train))
    if task == "binary":
        mean = min(max(mean, 1e-6), 1 - 1e-6)
        weights[design.bias] = np.log(mean / (1 - mean))
    else:
        weights[design.bias] = mean
    best: tuple[float, float, np.ndarray] | None = None
    for l2 in L2_PATH:
        weights = _fit(x_train, y_train, task, l2, weights, design.bias)
        p = _predict(weights, x_valid, task)
        score = (
            metrics.roc_auc(y_valid, p)
            if task == "binary"
            else -metrics.rmse(y_valid, p)
        )
        if best is None or score > best[0]:
            best = (score, l2, weights.copy())
    assert best is not None  # noqa: S101 (L2_PATH is not empty)
    return best[1], best[2]


def _fit(
    x: tuple[np.ndarray, np.ndarray],
    y: np.ndarray,
    task: str,
    l2: float,
    start: np.ndarray,
    bias: int,
) -> np.ndarray:
    """Minimizes the mean loss plus `l2 / 2 * |w|^2` (bias unpenalized)."""
    ids, values = x
    n = len(y)
    flat = ids.ravel()
    penalty = np.full(len(start), l2)
    penalty[bias] = 0.0
    curvature = 0.25 if task == "binary" else 1.0
    nonzero = int((values != 0).sum(1).max())
    square = np.bincount(flat, (values**2).ravel(), minlength=len(start))
    majorizer = curvature * nonzero * square / n + penalty
    majorizer = np.maximum(majorizer, 1e-12)  # ids no row holds

    def gradient(w: np.ndarray) -> np.ndarray:
        z = (w[ids] * values).sum(1)  # (n, slots) -> (n,)
        residual = (_sigmoid(z) if task == "binary" else z) - y
        g = np.bincount(
            flat, (values * residual[:, None]).ravel(), minlength=len(w)
        )
        out: np.ndarray = g / n + penalty * w
        return out

    w, z, t = start.copy(), start.copy(), 1.0
    for _ in range(MAX_STEPS):
        g = gradient(z)
        step = g / majorizer
        new = z - step
        if float(np.dot(g, new - w)) > 0:  # momentum points uphill: restart
            t, z = 1.0, w.copy()
            continue
        t_next = (1 + float(np.sqrt(1 + 4 * t * t))) / 2
        z = new + (t - 1) / t_next * (new - w)
        size = max(float(np.linalg.norm(new)), 1e-12)
        change = float(np.linalg.norm(new - w)) / size
        w, t = new, t_next
        if change < TOLERANCE:
            break
    return w


def _predict(
    weights: np.ndarray, x: tuple[np.ndarray, np.ndarray], task: str
) -> np.ndarray:
    ids, values = x
    z = (weights[ids] * values).sum(1)  # (n, slots) -> (n,)
    return _sigmoid(z) if task == "binary" else z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))
