import numpy as np
from absl.testing import parameterized

from tffm import MLP
from tffm import testing


class MLPTest(testing.TestCase):
    @parameterized.named_parameters(
        # Dense kernel + bias per hidden layer, then the output Dense.
        ("plain", {"hidden_units": [8, 4]}, 6),
        # Batch norm replaces the hidden biases with gamma and beta.
        ("batch_norm", {"hidden_units": [8], "batch_norm": True}, 5),
        ("dropout", {"hidden_units": [8], "dropout": 0.5}, 4),
        ("linear_only", {"hidden_units": []}, 2),
    )
    def test_layer_basics(self, kwargs, weights):
        x = self.rng.normal(size=(6, 5)).astype("float32")
        self.run_layer_test(
            MLP, kwargs, x, (6, 1), expect_trainable_weights=weights
        )

    def test_matches_numpy_forward(self):
        layer = MLP([3], activation="relu")
        x = self.rng.normal(size=(4, 2)).astype("float32")
        out = testing.to_numpy(layer(x))
        kernel, bias, out_kernel, out_bias = (
            testing.to_numpy(w).astype(np.float64) for w in layer.weights
        )
        hidden = np.maximum(x @ kernel + bias, 0.0)
        self.assertAllClose(
            out, hidden @ out_kernel + out_bias, tol=(1e-6, 1e-5)
        )

    def test_kernel_l2_adds_a_penalty_per_kernel(self):
        layer = MLP([3], kernel_l2=0.5)
        x = self.rng.normal(size=(2, 4)).astype("float32")
        layer(x)
        kernels = [
            testing.to_numpy(w).astype(np.float64)
            for w in layer.weights
            if "kernel" in w.path
        ]
        self.assertAllClose(
            sum(float(testing.to_numpy(v)) for v in layer.losses),
            0.5 * sum(np.sum(k**2) for k in kernels),
            tol=(1e-6, 1e-5),
        )

    @parameterized.named_parameters(
        ("units", {"hidden_units": [0]}, "hidden_units"),
        ("units_type", {"hidden_units": [2.5]}, "hidden_units"),
        ("dropout", {"dropout": 1.0}, "dropout"),
        ("l2", {"kernel_l2": -1.0}, "kernel_l2"),
    )
    def test_invalid_arguments(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            MLP(**kwargs)


class DropoutTest(testing.TestCase):
    def test_training_drops_at_the_rate_and_rescales(self):
        import keras

        layer = MLP([4], dropout=0.25)
        dropout = [b for b in layer.blocks if "dropout" in b.name][0]
        x = np.ones((200, 500), "float32")
        out = testing.to_numpy(dropout(x, training=True))
        kept = out != 0
        # 100,000 Bernoulli(0.75) draws: sd of the mean 0.0014.
        self.assertAllClose(kept.mean(), 0.75, tol=(0.01, 0))
        self.assertAllClose(out[kept], np.full(kept.sum(), 1 / 0.75))
        self.assertAllClose(testing.to_numpy(dropout(x)), x)
        second = testing.to_numpy(dropout(x, training=True))
        self.assertFalse(np.array_equal(second != 0, kept))  # a new mask
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            compiled = tf.function(
                lambda t: dropout(t, training=True), jit_compile=True
            )
            kept = testing.to_numpy(compiled(x)) != 0
            self.assertAllClose(kept.mean(), 0.75, tol=(0.01, 0))
