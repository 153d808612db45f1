import numpy as np
from absl.testing import parameterized

from tffm import LinearTerm
from tffm import testing


class LinearTermTest(testing.TestCase):
    @parameterized.named_parameters(("bias", True, 1), ("no_bias", False, 0))
    def test_layer_basics(self, use_bias, weights):
        x = self.rng.normal(size=(4, 6)).astype("float32")
        self.run_layer_test(
            LinearTerm,
            {"use_bias": use_bias},
            x,
            (4, 1),
            expect_trainable_weights=weights,
        )

    def test_hand_computed_values(self):
        layer = LinearTerm()
        x = np.array([[1.0, 2.0, -0.5], [0.0, 0.0, 0.0]], "float32")
        layer.build(x.shape)
        layer.bias.assign(np.array([0.25], "float32"))
        # w0 + sum_f w_f: 0.25 + 2.5 and 0.25 + 0.
        self.assertAllClose(layer(x), [[2.75], [0.25]])

    def test_gradient_is_one_per_field(self):
        layer = LinearTerm()
        x = self.rng.normal(size=(3, 5)).astype("float32")
        layer.build(x.shape)
        (grad,) = testing.gradients(layer, [layer.bias], x)
        self.assertAllClose(grad, [3.0])  # d/dw0 of a sum over 3 rows

    def test_invalid_input_rank(self):
        with self.assertRaisesRegex(ValueError, r"inputs.shape=\(2, 3, 4\)"):
            LinearTerm()(np.zeros((2, 3, 4), "float32"))
