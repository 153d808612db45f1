import itertools

import keras
import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import testing


def seed_formula(x, w0, w, v):
    """Rendle's FM in float64: w0 + sum w_i x_i + 1/2 sum_f (...)."""
    x, w, v = (np.asarray(a, np.float64) for a in (x, w, v))
    xv = x @ v  # (B, D)
    pair = 0.5 * ((xv**2) - (x**2) @ (v**2)).sum(axis=1)
    return w0 + x @ w + pair


def fm_weights(model):
    table = testing.to_numpy(model.get_layer("sparse_embedding").table)
    bias = float(testing.to_numpy(model.get_layer("linear").bias)[0])
    return bias, table[:, -1], table[:, :-1]


def dense_as_sparse(x):
    """Padded (indices, values) of a dense design matrix's non-zeros."""
    nnz = max(1, int((x != 0).sum(axis=1).max()))
    indices = -np.ones((x.shape[0], nnz), "int32")
    values = np.zeros((x.shape[0], nnz), "float32")
    for b, row in enumerate(x):
        cols = np.flatnonzero(row)
        indices[b, : len(cols)] = cols
        values[b, : len(cols)] = row[cols]
    return {"indices": indices, "values": values}


class FMDesignMatrixTest(testing.TestCase):
    def make_model(self, **kwargs):
        kwargs.setdefault("task", "regression")
        model = tffm.FM(num_features=7, embedding_dim=4, **kwargs)
        # Non-trivial weights: random bias, table at unit scale.
        emb = model.get_layer("sparse_embedding")
        emb.table.assign(self.rng.normal(size=(7, 5)).astype("float32") * 0.5)
        model.get_layer("linear").bias.assign([0.3])
        return model

    def sparse_x(self, batch_size=6):
        x = self.rng.normal(size=(batch_size, 7)).astype("float32")
        x[self.rng.random(x.shape) < 0.4] = 0.0
        return x

    def test_matches_seed_formula(self):
        model = self.make_model()
        x = self.sparse_x()
        out = model.predict(dense_as_sparse(x), verbose=0)
        self.assertEqual(out.shape, (6, 1))
        expected = seed_formula(x, *fm_weights(model))
        self.assertAllClose(out[:, 0], expected, tol=testing.FM_TRICK)

    def test_dense_rows_with_all_columns(self):
        model = self.make_model()
        x = self.rng.normal(size=(4, 7)).astype("float32")
        inputs = {
            "indices": np.tile(np.arange(7, dtype="int32"), (4, 1)),
            "values": x,
        }
        out = model.predict(inputs, verbose=0)[:, 0]
        expected = seed_formula(x, *fm_weights(model))
        self.assertAllClose(out, expected, tol=testing.FM_TRICK)

    def test_binary_task_is_sigmoid_of_formula(self):
        model = self.make_model(task="binary")
        x = self.sparse_x()
        out = model.predict(dense_as_sparse(x), verbose=0)[:, 0]
        logit = seed_formula(x, *fm_weights(model))
        self.assertAllClose(out, 1 / (1 + np.exp(-logit)), tol=testing.FM_TRICK)

    def test_order_three_adds_triples(self):
        model = self.make_model(order=3)
        x = self.sparse_x(4)
        out = model.predict(dense_as_sparse(x), verbose=0)[:, 0]
        w0, w, v = fm_weights(model)
        expected = seed_formula(x, w0, w, v)
        for b in range(4):
            for i, j, k in itertools.combinations(range(7), 3):
                expected[b] += (
                    (v[i] * v[j] * v[k]).sum() * x[b, i] * x[b, j] * x[b, k]
                )
        self.assertAllClose(out, expected, tol=testing.FM_TRICK)

    def test_gradients_match_closed_form(self):
        model = self.make_model()
        x = self.sparse_x(1)
        table = model.get_layer("sparse_embedding").table
        bias = model.get_layer("linear").bias
        inputs = dense_as_sparse(x)
        grad_table, grad_bias = testing.gradients(
            lambda: model(inputs), [table, bias]
        )
        _, _, v = fm_weights(model)
        x0 = x[0].astype(np.float64)
        # dy/dv_if = x_i sum_j v_jf x_j - v_if x_i^2; dy/dw_i = x_i; dy/dw0 = 1
        expected_v = x0[:, None] * (x0 @ v)[None, :] - v * (x0**2)[:, None]
        self.assertAllClose(
            grad_table[:, :-1], expected_v, tol=testing.FM_TRICK
        )
        self.assertAllClose(grad_table[:, -1], x0)
        self.assertAllClose(grad_bias, [1.0])

    def test_padding_and_out_of_range_add_nothing(self):
        model = self.make_model()
        x = self.sparse_x(3)
        inputs = dense_as_sparse(x)
        padded = {
            "indices": np.concatenate(
                [inputs["indices"], [[-1, 7]] * 3], axis=1
            ).astype("int32"),
            "values": np.concatenate(
                [inputs["values"], [[5.0, 3.0]] * 3], axis=1
            ).astype("float32"),
        }
        self.assertAllClose(
            model.predict(padded, verbose=0), model.predict(inputs, verbose=0)
        )

    def test_embedding_dim_zero_is_linear_model(self):
        model = tffm.FM(num_features=7, embedding_dim=0, task="regression")
        model.get_layer("sparse_embedding").table.assign(
            self.rng.normal(size=(7, 1)).astype("float32")
        )
        x = self.sparse_x()
        w = testing.to_numpy(model.get_layer("sparse_embedding").table)[:, 0]
        out = model.predict(dense_as_sparse(x), verbose=0)[:, 0]
        self.assertAllClose(out, x.astype(np.float64) @ w, tol=testing.FM_TRICK)

    @pytest.mark.usefixtures("tmp_path_cls")
    def test_keras_round_trip(self):
        model = self.make_model(order=3)
        inputs = dense_as_sparse(self.sparse_x())
        path = str(self.tmp_path / "fm.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded, tffm.FM)
        self.assertEqual(loaded.order, 3)
        self.assertAllClose(
            loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
        )


class FMFeatureSpecTest(testing.TestCase):
    FEATURES = [
        tffm.Categorical("city", vocabulary=["a", "b"]),
        tffm.Categorical("ad", hash_bins=5),
        tffm.Numeric("price"),
    ]

    def test_mixed_bfloat16_trains_with_the_row_penalty(self):
        # The penalty is computed in bf16 there; TensorFlow refused to add
        # it to the float32 data loss, so `fit` failed on every L2 model.
        model = tffm.FM(
            self.FEATURES, embedding_dim=4, embeddings_l2=0.1,
            dtype="mixed_bfloat16",
        )  # fmt: skip
        x = {
            "city": np.array([1, 2, 0, 3]),
            "ad": np.array([0, 4, 2, 1]),
            "price": np.array([1.0, np.nan, 3.0, 0.0], "float32"),
        }
        model.compile(optimizer="adam", loss="binary_crossentropy")
        history = model.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        model(x)
        self.assertLen(model.losses, 1)
        self.assertEqual(
            keras.backend.standardize_dtype(model.losses[0].dtype), "float32"
        )

    def test_matches_one_hot_design_matrix(self):
        # A spec FM is Rendle's FM on x = [one-hot(city), one-hot(ad), price].
        model = tffm.FM(self.FEATURES, embedding_dim=3, task="regression")
        emb = model.get_layer("feature_embedding")
        table = self.rng.normal(size=(11, 4)).astype("float32")
        emb.embeddings.assign(table[:, :3])
        emb.linear_weights.assign(table[:, 3])
        model.get_layer("linear").bias.assign([-0.2])
        inputs = {
            "city": np.array([2, 0, 3]),
            "ad": np.array([1, 5, 0]),
            "price": np.array([1.5, -2.0, 0.0], "float32"),
        }
        x = np.zeros((3, 11))
        for b in range(3):
            x[b, inputs["city"][b]] = 1.0
            x[b, 4 + inputs["ad"][b]] = 1.0
            x[b, 10] = inputs["price"][b]
        table = testing.fused_table(emb)
        expected = seed_formula(x, -0.2, table[:, -1], table[:, :-1])
        out = model.predict(inputs, verbose=0)[:, 0]
        self.assertAllClose(out, expected, tol=testing.FM_TRICK)

    def test_config_round_trip(self):
        model = tffm.FM(self.FEATURES, embedding_dim=2, order=4)
        clone = tffm.FM.from_config(model.get_config())
        self.assertEqual(clone.features, model.features)
        self.assertEqual(clone.order, 4)

    def test_dtype_policy_reaches_the_layers_and_survives_the_config(self):
        for kwargs in (
            dict(features=self.FEATURES),
            dict(num_features=7),
        ):
            model = tffm.FM(
                embedding_dim=4, order=3, dtype="mixed_bfloat16", **kwargs
            )
            names = ["fm_interaction_2", "fm_interaction_3", "linear"]
            names.append(
                "feature_embedding"
                if "features" in kwargs
                else "sparse_embedding"
            )
            for name in names:
                layer = model.get_layer(name)
                self.assertEqual(
                    layer.dtype_policy.name, "mixed_bfloat16", name
                )
                self.assertEqual(layer.compute_dtype, "bfloat16", name)
                self.assertEqual(layer.variable_dtype, "float32", name)
            # The head stays float32: probabilities at full precision.
            self.assertEqual(
                model.get_layer("probability").compute_dtype, "float32"
            )
            config = model.get_config()
            self.assertEqual(
                config["dtype"]["config"]["name"], "mixed_bfloat16"
            )
            clone = tffm.FM.from_config(config)
            self.assertEqual(
                clone.get_layer("fm_interaction_2").dtype_policy.name,
                "mixed_bfloat16",
            )
            self.assertEqual(clone.get_config(), config)
        default = tffm.FM(self.FEATURES, embedding_dim=2)
        self.assertEqual(
            default.get_layer("linear").dtype_policy.name, "float32"
        )

    @parameterized.named_parameters(
        ("both", dict(features=FEATURES, num_features=3), "exactly one"),
        ("neither", dict(), "exactly one"),
        ("task", dict(num_features=3, task="ranking"), "task='ranking'"),
        ("order", dict(num_features=3, order=1), "order=1"),
        ("dim", dict(num_features=3, embedding_dim=-2), "embedding_dim=-2"),
        ("l2_sparse", dict(num_features=3, embeddings_l2=0.1), "embeddings_l2"),
    )
    def test_invalid_arguments(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            tffm.FM(**kwargs)
