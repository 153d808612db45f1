"""Precise BN: statistics recomputed with the final weights, dropout off.

Expected values: the MLP's forward pass written out in numpy (float64)
from its weights, each batch-norm layer's batch mean and biased variance
averaged over the batches with equal weight.
"""

import keras
import numpy as np

from tffm import testing
from tffm.layers import MLP
from tffm.train.precise_bn import recompute_batch_norm


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,), name="x")
    dnn = MLP([5, 3], dropout=0.5, batch_norm=True, name="dnn")
    model = keras.Model(inputs, dnn(inputs))
    # Trained-looking statistics, far from the data's.
    for layer in dnn.blocks:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 7.0))
            layer.moving_variance.assign(
                np.full(layer.moving_variance.shape, 9.0)
            )
            layer.gamma.assign(np.linspace(0.5, 1.5, layer.gamma.shape[0]))
            layer.beta.assign(np.linspace(-0.2, 0.3, layer.beta.shape[0]))
    return model, dnn


def _numpy_statistics(dnn, batches):
    """Per BN layer: (mean of batch means, mean of batch variances)."""
    dense = [b for b in dnn.blocks if isinstance(b, keras.layers.Dense)]
    norms = [
        b for b in dnn.blocks if isinstance(b, keras.layers.BatchNormalization)
    ]
    sums = [[0.0, 0.0] for _ in norms]
    for x in batches:
        h = x.astype(np.float64)
        for i, (d, n) in enumerate(zip(dense, norms, strict=True)):
            z = h @ keras.ops.convert_to_numpy(d.kernel).astype(np.float64)
            mean, var = z.mean(0), z.var(0)
            sums[i][0] = sums[i][0] + mean
            sums[i][1] = sums[i][1] + var
            # Normalized with the batch's own statistics (training mode),
            # then ReLU; dropout is off.
            gamma = keras.ops.convert_to_numpy(n.gamma).astype(np.float64)
            beta = keras.ops.convert_to_numpy(n.beta).astype(np.float64)
            h = np.maximum(
                gamma * (z - mean) / np.sqrt(var + n.epsilon) + beta, 0.0
            )
    return [(m / len(batches), v / len(batches)) for m, v in sums]


class RecomputeBatchNormTest(testing.TestCase):
    def test_statistics_are_the_batch_average_with_dropout_off(self):
        model, dnn = _model()
        rng = np.random.default_rng(0)
        batches = [
            rng.normal(1.0, 2.0, size=(32, 4)).astype("float32")
            for _ in range(5)
        ]
        weights_before = [
            keras.ops.convert_to_numpy(w) for w in model.trainable_weights
        ]
        read = recompute_batch_norm(
            model, [({"x": b}, np.zeros(32)) for b in batches]
        )
        self.assertEqual(read, 5)
        expected = _numpy_statistics(dnn, batches)
        norms = [
            b
            for b in dnn.blocks
            if isinstance(b, keras.layers.BatchNormalization)
        ]
        for layer, (mean, var) in zip(norms, expected, strict=True):
            self.assertAllClose(
                keras.ops.convert_to_numpy(layer.moving_mean),
                mean,
                tol=(1e-5, 1e-5),
            )
            self.assertAllClose(
                keras.ops.convert_to_numpy(layer.moving_variance),
                var,
                tol=(1e-5, 1e-5),
            )
            self.assertAllClose(layer.momentum, 0.99, tol=(0, 0))
        for before, after in zip(
            weights_before, model.trainable_weights, strict=True
        ):
            self.assertAllClose(keras.ops.convert_to_numpy(after), before)
        rates = [
            b.rate for b in dnn.blocks if isinstance(b, keras.layers.Dropout)
        ]
        self.assertEqual(rates, [0.5, 0.5])

    def test_reads_at_most_max_batches(self):
        model, dnn = _model()
        rng = np.random.default_rng(1)
        batches = [rng.normal(size=(16, 4)).astype("float32") for _ in range(6)]
        read = recompute_batch_norm(
            model, [({"x": b}, None) for b in batches], max_batches=2
        )
        self.assertEqual(read, 2)
        (mean, _), _ = _numpy_statistics(dnn, batches[:2])
        first = next(
            b
            for b in dnn.blocks
            if isinstance(b, keras.layers.BatchNormalization)
        )
        self.assertAllClose(
            keras.ops.convert_to_numpy(first.moving_mean),
            mean,
            tol=(1e-5, 1e-5),
        )

    def test_a_model_without_batch_norm_is_left_alone(self):
        inputs = keras.Input((4,), name="x")
        model = keras.Model(inputs, MLP([3], dropout=0.5)(inputs))
        self.assertEqual(
            recompute_batch_norm(model, [({"x": np.ones((2, 4))}, None)]), 0
        )
