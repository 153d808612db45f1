import keras
import numpy as np
import pytest

import tffm
from tffm import testing
from tffm.metrics import log_loss
from tffm.metrics import roc_auc

FEATURES = [
    tffm.Categorical("city", vocabulary=["a", "b", "c"]),
    tffm.Categorical("ad", hash_bins=10),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.Numeric("price"),
]


def encoded_batch(rng, batch_size=8):
    return {
        "city": rng.integers(0, 5, size=batch_size),
        "ad": rng.integers(0, 11, size=batch_size),
        "tags": rng.integers(0, 5, size=(batch_size, 3)),
        "price": rng.normal(size=batch_size).astype("float32"),
    }


@pytest.fixture(scope="module")
def deepfm():
    keras.utils.set_random_seed(0)
    # tanh, not relu: no dead units, so every read row gets a DNN gradient.
    return tffm.DeepFM(
        FEATURES, embedding_dim=4, hidden_units=[8, 4], activation="tanh"
    )


def tanh_mlp_numpy(model, h):
    dnn = model.get_layer("dnn")
    for layer in dnn.blocks:
        if isinstance(layer, keras.layers.Dense):
            kernel = testing.to_numpy(layer.kernel).astype(np.float64)
            h = h @ kernel + testing.to_numpy(layer.bias)
        else:
            h = np.tanh(h)
    out = dnn.output_dense
    return h @ testing.to_numpy(out.kernel).astype(
        np.float64
    ) + testing.to_numpy(out.bias).astype(np.float64)


class DeepFMTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _model(self, deepfm):
        self.model = deepfm

    def test_one_table_feeds_fm_linear_and_dnn(self):
        model = self.model
        emb = model.get_layer("feature_embedding")
        # One fused table (embeddings and linear weights of every field)
        # is all the feature-side state.
        self.assertEqual(
            [w.path for w in emb.weights],
            [emb.embeddings.path, emb.linear_weights.path],
        )
        # The FM and the DNN read the very same embedding tensor.
        fm_input = model.get_layer("fm_interaction").input
        dnn_input = model.get_layer("flatten").input
        self.assertIs(fm_input, dnn_input)
        self.assertIs(fm_input, emb.output[0])
        self.assertIs(model.get_layer("linear").input, emb.output[1])

    def test_output_is_sigmoid_of_three_parts(self):
        model = self.model
        x = encoded_batch(self.rng)
        table = testing.fused_table(model.get_layer("feature_embedding"))
        rows = [x["city"], 5 + x["ad"]]
        v = np.zeros((8, 4, 5))
        v[:, 0], v[:, 1] = table[rows[0]], table[rows[1]]
        for b in range(8):
            tags = [16 + i for i in x["tags"][b] if i > 0]
            v[b, 2] = table[tags].sum(0)  # the default combiner
        v[:, 3] = x["price"][:, None] * table[21]
        vv, w = v[:, :, :4], v[:, :, 4]
        bias = testing.to_numpy(model.get_layer("linear").bias)[0]
        y_fm = 0.5 * (vv.sum(1) ** 2 - (vv**2).sum(1)).sum(1)
        y_dnn = tanh_mlp_numpy(model, vv.reshape(8, -1))[:, 0]
        logit = bias + w.sum(1) + y_fm + y_dnn
        out = model.predict(x, verbose=0)[:, 0]
        self.assertAllClose(out, 1 / (1 + np.exp(-logit)), tol=testing.FM_TRICK)

    def test_fm_and_dnn_both_move_the_embeddings(self):
        model = self.model
        table = model.get_layer("feature_embedding").embeddings
        x = encoded_batch(self.rng)
        for layer_name in ("fm_interaction", "dnn"):
            branch = keras.Model(
                model.inputs, model.get_layer(layer_name).output
            )
            (grad,) = testing.gradients(lambda b=branch: b(x), [table])
            read = np.unique(np.concatenate([x["city"], 5 + x["ad"]]))
            self.assertTrue(
                np.all(np.abs(grad[read, :4]).sum(axis=1) > 0), layer_name
            )
            unread = np.setdiff1d(np.arange(5, 16), 5 + x["ad"])
            self.assertAllClose(grad[unread], 0.0)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "embedding_dim=0"):
            tffm.DeepFM(FEATURES, embedding_dim=0)
        with self.assertRaisesRegex(ValueError, "hidden_units"):
            tffm.DeepFM(FEATURES, hidden_units=[8, 0])
        with self.assertRaisesRegex(ValueError, "dropout=1.5"):
            tffm.DeepFM(FEATURES, dropout=1.5)
        with self.assertRaisesRegex(ValueError, "Unknown feature type 'Image'"):
            tffm.DeepFM([{"type": "Image", "name": "photo"}])

    @pytest.mark.usefixtures("tmp_path_cls")
    def test_keras_round_trip(self):
        model = tffm.DeepFM(
            FEATURES,
            embedding_dim=3,
            hidden_units=[6],
            dropout=0.2,
            batch_norm=True,
            embeddings_l2=1e-4,
            kernel_l2=1e-4,
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        x = encoded_batch(self.rng, 32)
        model.fit(x, self.rng.integers(0, 2, 32), epochs=1, verbose=0)
        path = str(self.tmp_path / "deepfm.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)  # safe_mode=True: no Lambda
        self.assertIsInstance(loaded, tffm.DeepFM)
        self.assertEqual(loaded.get_config(), model.get_config())
        self.assertAllClose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        )


class DeepFMTrainingTest(testing.TestCase):
    def test_fit_learns_planted_fm(self):
        data = tffm.synthetic.make_planted_ctr(
            8000, num_categorical=4, vocabulary_size=20, seed=1
        )
        train, test = data.split(0.8)
        encoder = tffm.FeatureEncoder(data.features)
        model = tffm.DeepFM(data.features, embedding_dim=4, hidden_units=[16])
        model.compile(
            optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy"
        )
        x_train = {k: np.asarray(v) for k, v in encoder(train.raw).items()}
        x_test = {k: np.asarray(v) for k, v in encoder(test.raw).items()}
        before = log_loss(test.labels, model.predict(x_test, verbose=0))
        history = model.fit(
            x_train, train.labels, batch_size=256, epochs=5, verbose=0
        )
        losses = history.history["loss"]
        self.assertLess(losses[-1], losses[0])
        p = model.predict(x_test, verbose=0)
        self.assertLess(log_loss(test.labels, p), before - 0.02)
        optimum = roc_auc(test.labels, test.probabilities)
        # At least half of the achievable lift over chance, after 5 epochs on
        # 6,400 rows (the demo checks the optimum itself on more data).
        self.assertGreater(roc_auc(test.labels, p), 0.5 + 0.5 * (optimum - 0.5))


class MixedPrecisionTest(testing.TestCase):
    def test_policy_reaches_the_layers_and_survives_the_config(self):
        model = tffm.DeepFM(
            FEATURES, embedding_dim=4, hidden_units=[8], dtype="mixed_bfloat16"
        )
        dnn = model.get_layer("dnn").blocks[0]
        self.assertEqual(dnn.dtype_policy.name, "mixed_bfloat16")
        self.assertEqual(dnn.compute_dtype, "bfloat16")
        self.assertEqual(
            model.get_layer("feature_embedding").variable_dtype, "float32"
        )
        # The head stays float32: probabilities and losses at full precision.
        self.assertEqual(
            model.get_layer("probability").compute_dtype, "float32"
        )
        clone = tffm.DeepFM.from_config(model.get_config())
        self.assertEqual(
            clone.get_layer("dnn").blocks[0].dtype_policy.name, "mixed_bfloat16"
        )
