"""`tffm.data.vocab`: exact streaming moments and the scan's statistics."""

import collections
import math

import numpy as np

from tffm import testing
from tffm.data.vocab import Moments
from tffm.data.vocab import PartialScan
from tffm.data.vocab import finish_scan


def moments_of(*batches):
    acc = Moments()
    for batch in batches:
        acc.add(np.asarray(batch, np.float64))
    return acc


def partial_scan(columns):
    """A `PartialScan` of numeric `{column: values}` (labels all 1)."""
    rows = len(next(iter(columns.values()), []))
    labels = moments_of(np.ones(rows))
    return PartialScan(
        rows=rows,
        labels=labels,
        counts={},
        moments={name: moments_of(v) for name, v in columns.items()},
    )


class MomentsTest(testing.TestCase):
    def test_large_offset_does_not_cancel(self):
        # ss/n - mean^2 in float64 loses everything here: x^2 ~ 1e16, where
        # one ulp is 2, while the variance is 2/3.
        x = 1e8 + np.array([0.0, 1.0, 2.0])
        acc = moments_of(x)
        self.assertEqual(acc.count, 3)
        self.assertEqual(acc.mean(), 1e8 + 1.0)
        self.assertAllClose(acc.std(), np.std(x), tol=(0, 1e-15))
        self.assertAllClose(acc.std(), math.sqrt(2 / 3), tol=(0, 1e-15))
        naive = math.sqrt(max(0.0, np.mean(x**2) - np.mean(x) ** 2))
        self.assertGreater(abs(naive - math.sqrt(2 / 3)), 0.1)

    def test_any_split_and_merge_order_gives_the_same_bits(self):
        x = self.rng.normal(size=1000) * 1e6 + 3e9
        whole = moments_of(x)
        parts = [moments_of(x[:7], x[7:400]), moments_of(x[400:])]
        merged = Moments()
        for part in reversed(parts):
            merged.merge(part)
        self.assertEqual(merged.count, whole.count)
        self.assertEqual(merged.mean(), whole.mean())
        self.assertEqual(merged.std(), whole.std())
        self.assertEqual(merged.total(), whole.total())
        self.assertAllClose(whole.std(), np.std(x), tol=(0, 1e-12))
        self.assertAllClose(whole.mean(), np.mean(x), tol=(0, 1e-15))

    def test_tiny_and_huge_values(self):
        x = np.array([1e-300, -2e-300, 5e300, -5e300, 0.0])
        acc = moments_of(x)
        self.assertEqual(acc.total(), 0.0 + (1e-300 - 2e-300))
        self.assertEqual(acc.std(), math.inf)  # beyond float64: said so

    def test_empty_and_non_finite(self):
        acc = Moments()
        self.assertEqual((acc.count, acc.mean(), acc.std()), (0, 0.0, 0.0))
        with self.assertRaisesRegex(ValueError, "finite values only"):
            acc.add(np.array([1.0, np.inf]))


class FinishScanTest(testing.TestCase):
    def test_statistics_are_exact(self):
        x = 1e8 + np.array([0.0, 1.0, 2.0])
        scanned = finish_scan(partial_scan({"n": x}), {"n": "numeric"})
        count, mean, std = scanned.numeric["n"]
        self.assertEqual((count, mean), (3, 1e8 + 1.0))
        self.assertAllClose(std, np.std(x), tol=(0, 1e-15))
        self.assertEqual((scanned.rows, scanned.positives), (3, 3.0))

    def test_constant_column_warns_and_gets_unit_std(self):
        part = partial_scan({"flat": [5.0, 5.0, 5.0], "n": [1.0, 2.0, 3.0]})
        with self.assertWarnsRegex(
            UserWarning,
            "Feature 'flat': every training value is 5; it will "
            r"not affect the model \(std set to 1\)",
        ):
            scanned = finish_scan(part, {"flat": "numeric", "n": "numeric"})
        self.assertEqual(scanned.numeric["flat"], (3, 5.0, 1.0))

    def test_column_without_values_warns(self):
        part = partial_scan({"n": [1.0, 2.0]})
        part.moments["empty"] = Moments()
        with self.assertWarnsRegex(
            UserWarning, "Feature 'empty': no value in the training data"
        ):
            scanned = finish_scan(part, {"n": "numeric", "empty": "numeric"})
        self.assertEqual(scanned.numeric["empty"], (0, 0.0, 1.0))

    def test_counts_pass_through(self):
        part = partial_scan({"n": [1.0, 2.0]})
        part.counts["c"] = collections.Counter({"b": 2, "a": 2, "z": 1})
        scanned = finish_scan(part, {"n": "numeric", "c": "categorical"})
        self.assertEqual(scanned.vocabulary("c"), ["a", "b", "z"])
        self.assertEqual(scanned.vocabulary("c", min_frequency=2), ["a", "b"])
        self.assertEqual(scanned.vocabulary("c", max_tokens=1), ["a"])
