"""Platt scaling of a binary model, fitted on held-out rows.

`fit_platt` is numpy only; `calibrate` sets a model's `LogitCalibration`.
"""

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tffm.data.lines import raise_row_errors


def fit_platt(
    logits: ArrayLike, labels: ArrayLike, *, iterations: int = 100
) -> tuple[float, float]:
    """`(scale, shift)` minimizing the logloss of `sigmoid(scale*z + shift)`.

    Damped Newton (Levenberg-Marquardt) on the two parameters of the convex
    negative log likelihood (Platt 1999, without his target smoothing: rows
    are many), from the identity `(1, 0)`: a step is taken only if it lowers
    the loss, so saturated, over-confident logits cannot make it diverge,
    and the result is never worse than no calibration.

    Args:
        logits: `(num_rows,)` raw logits `z` of held-out rows.
        labels: `(num_rows,)` 0/1 labels.
        iterations: int. Most Newton steps.

    Returns:
        `(scale, shift)`; `(1.0, 0.0)` when the rows hold one class only.
    """
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if y.min() == y.max():
        return 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], axis=1)  # (N, 2)

    def loss(theta: np.ndarray) -> float:
        s = x @ theta  # (N,)
        # -log p = log(1 + e^-s) for y=1, log(1 + e^s) for y=0: stable.
        return float(np.mean(np.logaddexp(0.0, np.where(y > 0, -s, s))))

    theta = np.array([1.0, 0.0])
    current = loss(theta)
    damping = 1e-6  # Levenberg-Marquardt: Newton when the curvature is
    # informative, gradient descent when saturated rows flatten it.
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ theta)))  # stable sigmoid
        gradient = x.T @ (p - y) / len(y)
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(y)
        while damping < 1e12:
            step = np.linalg.solve(hessian + damping * np.eye(2), gradient)
            value = loss(theta - step)
            if value < current:
                break
            damping *= 10.0
        else:
            break  # no step lowers the loss: at the optimum
        theta, improvement = theta - step, current - value
        current, damping = value, max(damping / 10.0, 1e-12)
        if improvement < 1e-13:
            break
    return float(theta[0]), float(theta[1])


def calibrate(model: Any, dataset: Any) -> dict[str, float]:
    """Fits a binary model's `LogitCalibration` on held-out rows, in place.

    Args:
        model: a binary tffm model (its layers `raw_logit` and `logit`).
        dataset: encoded `(features, label)` batches of held-out rows.

    Returns:
        `{"scale": a, "shift": b}`, now the layer's weights.
    """
    import keras  # deferred: Keras (`fit_platt` is numpy only)

    raw = keras.Model(model.inputs, model.get_layer("raw_logit").output)
    logits, labels = [], []
    with raise_row_errors():
        for features, y in dataset:
            out = raw(features, training=False)  # (B, 1)
            logits.append(keras.ops.convert_to_numpy(out)[:, 0])
            labels.append(np.asarray(y).reshape(-1))
    scale, shift = fit_platt(np.concatenate(logits), np.concatenate(labels))
    layer = model.get_layer("logit")
    layer.scale.assign(scale)
    layer.shift.assign(shift)
    return {"scale": scale, "shift": shift}
