import keras
import numpy as np
import pytest

import tffm
from tffm import testing
from tffm.metrics import log_loss
from tffm.metrics import roc_auc
from tffm.train.calibration import calibrate
from tffm.train.calibration import fit_platt


def brute_force_platt(z, y):
    """Grid search of the logloss of sigmoid(a z + b): the reference."""
    best = (np.inf, 0.0, 0.0)
    for a in np.linspace(0.1, 3.0, 291):
        for b in np.linspace(-2.0, 2.0, 201):
            p = np.clip(1 / (1 + np.exp(-(a * z + b))), 1e-12, 1 - 1e-12)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            best = min(best, (loss, a, b))
    return best[1], best[2]


class FitPlattTest(testing.TestCase):
    def test_recovers_a_planted_calibration(self):
        z = self.rng.normal(0, 2, 20000)
        # Labels drawn from sigmoid(0.5 z - 0.7): an over-confident score.
        y = (self.rng.random(20000) < 1 / (1 + np.exp(-(0.5 * z - 0.7)))) * 1.0
        scale, shift = fit_platt(z, y)
        self.assertAllClose([scale, shift], [0.5, -0.7], tol=(0.05, 0))
        # The optimum matches a brute-force grid search (grid step 0.01/0.02).
        grid_scale, grid_shift = brute_force_platt(z[:4000], y[:4000])
        scale4, shift4 = fit_platt(z[:4000], y[:4000])
        self.assertAllClose(
            [scale4, shift4], [grid_scale, grid_shift], tol=(0.02, 0)
        )

    def test_one_class_is_left_alone(self):
        self.assertEqual(fit_platt([0.1, 2.0], [1, 1]), (1.0, 0.0))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="uses tf.data batches"
)
class CalibrateModelTest(testing.TestCase):
    def test_improves_logloss_keeps_auc_and_exports(self):
        import tensorflow as tf

        data = tffm.synthetic.make_planted_ctr(
            4000, num_categorical=3, vocabulary_size=10, seed=1
        )
        model = tffm.DeepFM(data.features, embedding_dim=4, hidden_units=[32])
        encoder = tffm.FeatureEncoder(data.features)
        ids = {k: np.asarray(v) for k, v in encoder(data.raw).items()}
        model.compile(
            optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy"
        )
        model.fit(
            ids, data.labels, epochs=8, batch_size=64, verbose=0
        )  # overfits
        half = {k: v[2000:] for k, v in ids.items()}
        labels = data.labels[2000:]
        before = model.predict(half, verbose=0)[:, 0]
        dataset = tf.data.Dataset.from_tensor_slices((half, labels)).batch(500)
        fitted = calibrate(model, dataset)
        after = model.predict(half, verbose=0)[:, 0]
        self.assertLess(log_loss(labels, after), log_loss(labels, before))
        self.assertAllClose(
            roc_auc(labels, after), roc_auc(labels, before), tol=(1e-9, 0)
        )
        # probability = sigmoid(logit) still holds, and the layer holds
        # what was fitted.
        out = tffm.output_model(model).predict(half, verbose=0)
        self.assertAllClose(
            out["probability"],
            1 / (1 + np.exp(-out["logit"])),
            tol=(1e-6, 1e-5),
        )
        layer = model.get_layer("logit")
        self.assertAllClose(testing.to_numpy(layer.scale), fitted["scale"])
        self.assertLen(layer.trainable_weights, 0)


class FitPlattSaturatedTest(testing.TestCase):
    def test_over_confident_logits_do_not_diverge(self):
        # Logits of +-40 with 20% wrong labels: a model far too sure of
        # itself. The fit must lower the logloss, never raise it.
        rng = np.random.default_rng(1)
        sign = rng.choice([-1.0, 1.0], 5000)
        z = 40.0 * sign + rng.normal(0, 1, 5000)
        y = np.where(rng.random(5000) < 0.8, sign > 0, sign < 0) * 1.0
        scale, shift = fit_platt(z, y)
        self.assertTrue(0 < scale < 1)

        def loss(a, b):
            s = a * z + b
            return np.mean(np.logaddexp(0, np.where(y > 0, -s, s)))

        self.assertLess(loss(scale, shift), loss(1.0, 0.0))
        # About 80% right: sigmoid(scale * 40) should be near 0.8.
        self.assertAllClose(1 / (1 + np.exp(-scale * 40)), 0.8, tol=(0.02, 0))
