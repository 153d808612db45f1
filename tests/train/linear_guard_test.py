import numpy as np
import pytest

from tffm import testing
from tffm.features import Categorical
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.metrics import roc_auc
from tffm.train import linear_guard as guard
from tffm.train import pipeline
from tffm.train.config import TrainConfig

FEATURES = [
    Categorical("a", vocabulary=["x", "y", "z"]),  # ids 0..4
    Categorical("b", vocabulary=["p", "q"]),  # ids 0..3
    MultiCategorical("tags", vocabulary=["t1", "t2", "t3"]),  # 0: padding
    Numeric("n", transform="log1p", mean=1.0, std=2.0),
]
# An iterative float64 fit run to a 1e-12 step against the exact optimum:
# the gap left is the descent's, measured at about 1e-6.
CONVERGED = (1e-4, 1e-4)


def batches(rng, rows, *, batch_size=64, label=None):
    """Encoded batches of FEATURES and the dense float64 design matrix."""
    a = rng.integers(1, 5, rows)
    b = rng.integers(1, 4, rows)
    tags = rng.integers(0, 5, (rows, 3))
    n = rng.exponential(3.0, rows).astype("float32")
    n[::7] = np.nan  # missing: standardized to 0
    # The dense design, written out independently of `_Design`.
    x = np.zeros((rows, 5 + 4 + 5 + 1 + 1))
    x[np.arange(rows), a] = 1
    x[np.arange(rows), 5 + b] = 1
    for j in range(3):
        keep = tags[:, j] > 0
        x[np.arange(rows)[keep], 9 + tags[keep, j]] += 1  # summed list
    standardized = (np.log1p(np.maximum(n.astype(np.float64), 0)) - 1) / 2
    x[:, 14] = np.where(np.isnan(standardized), 0.0, standardized)
    x[:, 15] = 1  # bias
    if label is None:
        true = np.linspace(-1, 1, x.shape[1])
        label = (rng.random(rows) < 1 / (1 + np.exp(-x @ true))).astype(float)
    out = []
    for begin in range(0, rows, batch_size):
        part = slice(begin, begin + batch_size)
        out.append(
            (
                {"a": a[part], "b": b[part], "tags": tags[part], "n": n[part]},
                label[part],
            )
        )
    return out, x, label


def newton_logistic(x, y, l2):
    """Mean logloss + l2 / 2 |w|^2 (bias free), by float64 Newton steps."""
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        g = x.T @ (p - y) / len(y) + penalty * w
        h = (x * (p * (1 - p))[:, None]).T @ x / len(y) + np.diag(penalty)
        w -= np.linalg.lstsq(h, g, rcond=None)[0]
    return w


def objective(x, y, w, l2):
    p = np.clip(1 / (1 + np.exp(-x @ w)), 1e-12, 1 - 1e-12)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss + l2 / 2 * np.sum(w[:-1] ** 2)


class LinearFitTest(testing.TestCase):
    def test_design_matches_the_dense_matrix(self):
        data, x, _ = batches(self.rng, 50)
        design = guard._Design(FEATURES)
        (ids, values), _ = design.read(data, 10_000)
        dense = np.zeros((50, design.columns))
        np.add.at(dense, (np.arange(50)[:, None], ids), values)
        # Unused columns (the OOV row 0 of `b`, padding id 0 of `tags`)
        # aside, the same matrix.
        used = [c for c in range(design.columns) if c not in (5, 9)]
        self.assertAllClose(dense[:, used], np.delete(x, [5, 9], axis=1))

    def test_logistic_fit_reaches_the_newton_optimum(self):
        data, x, y = batches(self.rng, 600)
        design = guard._Design(FEATURES)
        xs, ys = design.read(data, 10_000)
        l2 = 1e-3
        expected = newton_logistic(x, y, l2)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(guard, "MAX_STEPS", 3000)
            patch.setattr(guard, "TOLERANCE", 1e-12)
            w = guard._fit(xs, ys, "binary", l2, np.zeros(16), design.bias)
        self.assertAllClose(
            np.delete(w, [5, 9]), np.delete(expected, [5, 9]), CONVERGED
        )
        # The default budget of steps gets within 1e-3 of the optimum.
        w = guard._fit(xs, ys, "binary", l2, np.zeros(16), design.bias)
        best = objective(x, y, expected, l2)
        self.assertLess(objective(x, y, w, l2) - best, 1e-3 * best)

    def test_ridge_fit_matches_the_closed_form(self):
        data, x, _ = batches(self.rng, 400)
        y = x @ np.linspace(1, 2, 16) + self.rng.normal(0, 0.1, 400)
        for (_, part), begin in zip(data, range(0, 400, 64), strict=True):
            part[:] = y[begin : begin + 64]
        design = guard._Design(FEATURES)
        xs, ys = design.read(data, 10_000)
        l2 = 1e-2
        penalty = np.full(16, l2)
        penalty[-1] = 0
        keep = [c for c in range(16) if c not in (5, 9)]
        xk = x[:, keep]
        expected = np.linalg.solve(
            xk.T @ xk / 400 + np.diag(penalty[keep]), xk.T @ y / 400
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(guard, "MAX_STEPS", 5000)
            patch.setattr(guard, "TOLERANCE", 1e-12)
            w = guard._fit(xs, ys, "regression", l2, np.zeros(16), design.bias)
        self.assertAllClose(w[keep], expected, CONVERGED)


def xor_batches(rng, rows):
    """Labels from `a == b` (no linear model sees it), and the true odds."""
    a = rng.integers(1, 3, rows)
    b = rng.integers(1, 3, rows)
    logit = np.where(a == b, 2.0, -2.0)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    features = [Categorical("a", vocabulary=["x", "y"])]
    features.append(Categorical("b", vocabulary=["x", "y"]))
    data = [
        ({"a": a[i : i + 100], "b": b[i : i + 100]}, y[i : i + 100])
        for i in range(0, rows, 100)
    ]
    return features, data, y


class GuardTest(testing.TestCase):
    def test_a_model_that_sees_the_interaction_is_not_below(self):
        features, training, _ = xor_batches(self.rng, 2000)
        _, validation, y = xor_batches(self.rng, 1000)

        def oracle(batch, training):
            same = np.asarray(batch["a"]) == np.asarray(batch["b"])
            return np.where(same, 0.88, 0.12)[:, None]

        record = guard.linear_guard(
            oracle, features, "binary", training, validation
        )
        self.assertFalse(record["below"])
        self.assertNotIn("advice", record)
        self.assertEqual(record["rows"], 1000)
        self.assertEqual(record["training_rows"], 2000)
        # The linear model cannot tell `a == b` from its margins: AUC 1/2.
        self.assertLess(abs(record["linear"] - 0.5), 0.05)
        expected = roc_auc(y, np.where(
            np.concatenate([v["a"] == v["b"] for v, _ in validation]), 1, 0
        ))  # fmt: skip
        self.assertAllClose(record["model"], expected)

    def test_a_model_below_the_linear_one_gets_advice(self):
        data, _, _ = batches(self.rng, 3000)
        training, validation = data[:40], data[40:]

        def noise(batch, training):
            rows = len(batch["a"])
            return np.random.default_rng(1).random((rows, 1))

        record = guard.linear_guard(
            noise, FEATURES, "binary", training, validation,
            model_name="deepfm",
        )  # fmt: skip
        self.assertTrue(record["below"])
        self.assertGreater(record["shortfall"], 0.1)
        self.assertGreater(record["shortfall_in_sd"], 3)
        self.assertIn("--model lr", record["advice"][0])
        self.assertIn("below a linear model's", guard.describe(record))


class GuardSwitchTest(testing.TestCase):
    def test_off_fits_nothing(self):
        config = TrainConfig(format="criteo", linear_guard=False)
        self.assertIsNone(pipeline._guard(None, config, None, None))
