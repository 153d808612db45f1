import itertools

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from tffm import FMInteraction
from tffm import testing


def anova_reference(v: np.ndarray, order: int) -> np.ndarray:
    """sum over field subsets of size `order` of sum_d prod v, float64 loop."""
    v = np.asarray(v, dtype=np.float64)
    batch_size, num_fields, _ = v.shape
    out = np.zeros((batch_size, 1))
    for b in range(batch_size):
        for combo in itertools.combinations(range(num_fields), order):
            out[b, 0] += np.prod(v[b, list(combo)], axis=0).sum()
    return out


class FMInteractionTest(testing.TestCase):
    @parameterized.product(order=(2, 3, 4), reduce_sum=(True, False))
    def test_layer_basics(self, order, reduce_sum):
        x = self.rng.normal(size=(5, 6, 3)).astype("float32")
        self.run_layer_test(
            FMInteraction,
            {"order": order, "reduce_sum": reduce_sum},
            x,
            (5, 1) if reduce_sum else (5, 3),
            expect_trainable_weights=0,
        )

    def test_output_shapes(self):
        x = self.rng.random((5, 4, 3), dtype="float32")
        self.assertEqual(tuple(FMInteraction()(x).shape), (5, 1))
        unreduced = FMInteraction(reduce_sum=False)(x)
        self.assertEqual(tuple(unreduced.shape), (5, 3))
        layer = FMInteraction()
        self.assertEqual(layer.compute_output_shape((None, 4, 3)), (None, 1))
        self.assertEmpty(layer.weights)

    def test_hand_computed_values(self):
        # Fields v1=(1,2), v2=(3,-1), v3=(0.5,4).
        # <v1,v2> = 3-2 = 1; <v1,v3> = 0.5+8 = 8.5; <v2,v3> = 1.5-4 = -2.5.
        v = np.array([[[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]]], "float32")
        self.assertAllClose(FMInteraction()(v), [[7.0]])
        # Per dimension: d0: 3 + 0.5 + 1.5 = 5; d1: -2 + 8 - 4 = 2.
        self.assertAllClose(FMInteraction(reduce_sum=False)(v), [[5.0, 2.0]])
        # Order 3: d0: 1*3*0.5 = 1.5; d1: 2*(-1)*4 = -8.
        self.assertAllClose(FMInteraction(order=3)(v), [[-6.5]])

    @parameterized.product(
        order=(2, 3, 4), shape=((3, 4, 2), (2, 7, 5), (4, 12, 16))
    )
    def test_matches_pairwise_reference_float64(self, order, shape):
        v = self.rng.normal(size=shape)
        with testing.float64_enabled():
            layer = FMInteraction(order=order, dtype="float64")
            out = testing.to_numpy(layer(v))
        self.assertEqual(out.dtype, np.float64)
        self.assertAllClose(out, anova_reference(v, order), tol=(1e-10, 1e-10))

    @parameterized.product(order=(2, 3, 4))
    def test_matches_reference_float32(self, order):
        v = self.rng.uniform(-1, 1, size=(8, 10, 8)).astype("float32")
        out = FMInteraction(order=order)(v)
        self.assertAllClose(
            out, anova_reference(v, order), tol=testing.FM_TRICK
        )

    @parameterized.product(order=(2, 3, 4))
    def test_mask_drops_exactly_masked_fields(self, order):
        v = self.rng.normal(size=(4, 6, 3))
        mask = np.array(
            [
                [1, 1, 1, 1, 1, 1],
                [1, 0, 1, 0, 1, 1],
                [0, 0, 1, 1, 1, 0],
                [1, 1, 1, 1, 0, 0],
            ],
            dtype=bool,
        )
        with testing.float64_enabled():
            out = testing.to_numpy(
                FMInteraction(order=order, dtype="float64")(v, mask=mask)
            )
        for b in range(4):
            kept = v[b : b + 1, mask[b]]
            self.assertAllClose(
                out[b : b + 1], anova_reference(kept, order), tol=testing.FP64
            )

    @parameterized.product(order=(2, 3, 4))
    def test_too_few_fields_give_zero(self, order):
        v = self.rng.normal(size=(3, order - 1, 4)).astype("float32")
        self.assertAllClose(FMInteraction(order=order)(v), np.zeros((3, 1)))

    @parameterized.product(order=(2, 3, 4))
    def test_field_permutation_invariance(self, order):
        v = self.rng.normal(size=(3, 9, 4)).astype("float32")
        perm = self.rng.permutation(9)
        layer = FMInteraction(order=order)
        self.assertAllClose(layer(v[:, perm]), layer(v), tol=testing.FM_TRICK)

    @parameterized.product(order=(2, 3, 4), dominant=((3,), (3, 6)))
    def test_dominant_fields_keep_float32_precision(self, order, dominant):
        # Huge numeric values (x = 1e4, and 3e3 for a second field) scale
        # fields' vectors. The square-of-sum identity subtracts two ~1e8
        # squares in float32 and loses the ~1e4 result; listed as
        # `exact_fields`, they stay out of it (and orders 3-4 always run the
        # prefix-sum program).
        v = self.rng.uniform(-1, 1, size=(16, 8, 4))
        v[:, 3] *= 1e4
        if len(dominant) > 1:
            v[:, 6] *= 3e3
        expected = anova_reference(v, order)
        layer = FMInteraction(order=order, exact_fields=dominant)
        out = testing.to_numpy(layer(v.astype("float32")))
        rel = np.abs(out - expected) / np.abs(expected)
        self.assertLess(rel.max(), 1e-4)
        if order == 2 and len(dominant) == 1:
            # (Two dominant fields make their own product the result, which
            # the identity then keeps; one alone is the failing case.)
            plain = testing.to_numpy(FMInteraction()(v.astype("float32")))
            rel_identity = np.abs(plain - expected) / np.abs(expected)
            self.assertGreater(rel_identity.max(), 1e-2)

    @parameterized.named_parameters(
        ("none", ()), ("one", (2,)), ("several", (0, 4, 5)), ("all", "all")
    )
    def test_exact_fields_give_the_same_value(self, exact):
        v = self.rng.normal(size=(4, 6, 3))
        with testing.float64_enabled():
            layer = FMInteraction(exact_fields=exact, dtype="float64")
            out = testing.to_numpy(layer(v))
        self.assertAllClose(out, anova_reference(v, 2), tol=testing.FP64)

    def test_invalid_exact_fields(self):
        for bad in ((-1,), (1, 1), ("a",), (True,)):
            with self.assertRaisesRegex(ValueError, "exact_fields"):
                FMInteraction(exact_fields=bad)
        with self.assertRaisesRegex(ValueError, "must index the 3 fields"):
            FMInteraction(exact_fields=(3,))(np.zeros((2, 3, 4), "float32"))

    def test_gradient_matches_closed_form(self):
        # d/dv_i sum_{j<k} <v_j, v_k> = sum_{j != i} v_j.
        v = keras.Variable(self.rng.normal(size=(2, 5, 3)).astype("float32"))
        (grad,) = testing.gradients(FMInteraction(), [v], v)
        v_np = testing.to_numpy(v).astype(np.float64)
        expected = v_np.sum(axis=1, keepdims=True) - v_np
        self.assertAllClose(grad, expected, tol=testing.FM_TRICK)

    def test_in_trainable_model(self):
        # The interaction of trainable embeddings trains with model.fit.
        inputs = keras.Input(shape=(3,), dtype="int32")
        emb = keras.layers.Embedding(10, 4)(inputs)
        model = keras.Model(inputs, FMInteraction()(emb))
        model.compile(optimizer="sgd", loss="mse")
        ids = self.rng.integers(0, 10, size=(16, 3))
        before = testing.to_numpy(model.layers[1].embeddings).copy()
        model.fit(ids, np.ones((16, 1)), epochs=1, verbose=0)
        after = testing.to_numpy(model.layers[1].embeddings)
        self.assertFalse(np.allclose(before, after))

    @parameterized.named_parameters(
        ("one", 1), ("five", 5), ("string", "2"), ("bool", True), ("none", None)
    )
    def test_invalid_order(self, order):
        with self.assertRaisesRegex(ValueError, "`order`.*Received: order="):
            FMInteraction(order=order)

    def test_invalid_reduce_sum(self):
        with self.assertRaisesRegex(ValueError, "reduce_sum"):
            FMInteraction(reduce_sum="yes")

    def test_invalid_input_rank(self):
        with self.assertRaisesRegex(ValueError, r"inputs.shape=\(2, 3\)"):
            FMInteraction()(np.zeros((2, 3), "float32"))

    def test_invalid_mask_shape(self):
        with self.assertRaisesRegex(ValueError, "mask.shape"):
            FMInteraction()(
                np.zeros((2, 3, 4), "float32"), mask=np.ones((2, 4))
            )

    def test_serialization(self):
        layer = FMInteraction(order=3, reduce_sum=False, name="fm3")
        config = layer.get_config()
        self.assertEqual(config["order"], 3)
        self.assertFalse(config["reduce_sum"])
        clone = FMInteraction.from_config(config)
        self.assertEqual(clone.get_config(), config)
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        self.assertIsInstance(restored, FMInteraction)
        self.assertEqual(restored.order, 3)

    @pytest.mark.usefixtures("tmp_path_cls")
    def test_keras_round_trip(self):
        inputs = keras.Input(shape=(4, 3))
        model = keras.Model(inputs, FMInteraction(order=4)(inputs))
        path = str(self.tmp_path / "fm.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)  # safe_mode=True
        x = self.rng.normal(size=(3, 4, 3)).astype("float32")
        self.assertAllClose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        )
