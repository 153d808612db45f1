import math

import keras
import numpy as np

from tffm import testing
from tffm.models import LogLoss
from tffm.train.callbacks import AUC_LOGLOSS
from tffm.train.callbacks import CosineDecay
from tffm.train.callbacks import DerivedMetrics
from tffm.train.callbacks import EarlyStopping
from tffm.train.callbacks import PlateauDecay


class FakeOptimizer:
    def __init__(self, rate):
        self.learning_rate = rate


class FakeModel:
    def __init__(self, rate):
        self.optimizer = FakeOptimizer(rate)


def run_epochs(callback, values, rate=1.0, key="val_auc"):
    """Feeds `values` of `key` as epoch logs; returns the rate after each."""
    callback.set_model(FakeModel(rate))
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, {key: value})
        rates.append(float(callback.model.optimizer.learning_rate))
    return rates


class PlateauDecayTest(testing.TestCase):
    def test_waits_for_warmup_then_decays_after_patience(self):
        decay = PlateauDecay(
            "val_auc", factor=0.5, patience=2, start_from_epoch=3
        )
        # Flat from the first epoch (an FM's slow start): nothing happens
        # before epoch 3; then 2 flat epochs give one decay, 2 more another.
        rates = run_epochs(decay, [0.7] * 8)
        self.assertEqual(rates, [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25])

    def test_improvement_resets_the_wait(self):
        decay = PlateauDecay("val_auc", factor=0.5, patience=2)
        rates = run_epochs(decay, [0.7, 0.69, 0.71, 0.70, 0.72, 0.71, 0.70])
        self.assertEqual(rates, [1, 1, 1, 1, 1, 1, 0.5])

    def test_minimizes_losses_and_keeps_a_floor(self):
        decay = PlateauDecay(
            "val_rmse", factor=0.1, patience=1, min_learning_rate=0.05
        )
        rates = run_epochs(decay, [1.0, 0.9, 0.95, 0.95], key="val_rmse")
        self.assertEqual(rates, [1, 1, 0.1, 0.05])


class CosineDecayTest(testing.TestCase):
    def test_matches_the_formula(self):
        rates = run_epochs(CosineDecay(0.01, 5), [0.5] * 6, rate=0.01)
        expected = [
            0.01 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(e / 4, 1))))
            for e in range(6)
        ]
        self.assertAllClose(rates, expected, tol=(1e-12, 1e-9))
        self.assertAllClose(rates[-1], 1e-4, tol=(1e-12, 1e-9))


class DerivedMetricsTest(testing.TestCase):
    def test_auc_minus_logloss_and_the_learning_rate(self):
        callback = DerivedMetrics()
        callback.set_model(FakeModel(0.25))
        logs = {"val_auc": 0.9, "val_logloss": 0.3}
        callback.on_epoch_end(0, logs)
        self.assertAllClose(logs[AUC_LOGLOSS], 0.6, tol=(1e-12, 0))
        self.assertEqual(logs["learning_rate"], 0.25)


class LogLossTest(testing.TestCase):
    def test_matches_numpy_for_both_label_shapes(self):
        y = np.array([1, 0, 1, 1, 0], "float32")
        p = np.array([[0.9], [0.2], [0.6], [0.99], [0.4]], "float32")
        expected = -np.mean(y * np.log(p[:, 0]) + (1 - y) * np.log(1 - p[:, 0]))
        for labels in (y, y[:, None]):
            metric = LogLoss()
            metric.update_state(labels, p)
            self.assertAllClose(metric.result(), expected, tol=(1e-6, 1e-5))

    def test_serializes(self):
        restored = keras.metrics.deserialize(keras.metrics.serialize(LogLoss()))
        self.assertIsInstance(restored, LogLoss)
        self.assertEqual(restored.name, "logloss")


class MarkedModel:
    """A model whose weights say which epoch wrote them."""

    def __init__(self):
        self.stop_training = False
        self.marker = -1

    def get_weights(self):
        return [np.array(self.marker)]

    def set_weights(self, weights):
        self.marker = int(weights[0])


class EarlyStoppingTest(testing.TestCase):
    def run_epochs(self, values, *, patience, warmup):
        callback = EarlyStopping(
            monitor="val_auc",
            mode="max",
            patience=patience,
            warmup_epochs=warmup,
        )
        model = MarkedModel()
        callback.set_model(model)
        callback.on_train_begin()
        ran = 0
        for epoch, value in enumerate(values):
            model.marker = epoch  # this epoch's weights
            callback.on_epoch_end(epoch, {"val_auc": value})
            ran += 1
            if model.stop_training:
                break
        callback.on_train_end()
        return ran, model.marker

    def test_an_epoch_inside_the_warmup_can_be_the_best(self):
        # Best at epoch 0; no stop before epoch 3; then 2 flat epochs.
        ran, kept = self.run_epochs(
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], patience=2, warmup=3
        )
        self.assertEqual((ran, kept), (5, 0))

    def test_patience_zero_still_waits_for_the_warmup(self):
        ran, kept = self.run_epochs(
            [0.9, 0.8, 0.85, 0.7, 0.95, 0.1], patience=0, warmup=3
        )
        self.assertEqual((ran, kept), (4, 0))

    def test_improvements_after_the_warmup_reset_the_wait(self):
        ran, kept = self.run_epochs(
            [0.5, 0.6, 0.55, 0.7, 0.65, 0.8, 0.7, 0.6, 0.5],
            patience=2,
            warmup=3,
        )
        self.assertEqual((ran, kept), (8, 5))
