import os

import keras
import numpy as np
import pytest

import tffm
from tffm import testing

IS_TF = keras.backend.backend() == "tensorflow"

FEATURES = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo", "lima"]),
    tffm.Categorical("user", vocabulary=[10, 20, 30]),
    tffm.Categorical("ad", hash_bins=97),
    tffm.MultiCategorical("tags", vocabulary=["x", "y"], max_len=3),
    tffm.Numeric("price"),
]


def raw_batch():
    return {
        "city": np.array(["tokyo", "berlin", "", "paris"], dtype=object),
        "user": np.array([30, 99, -1, 10]),
        "ad": np.array(["ad-1", "", "日本語", "x" * 500], dtype=object),
        "tags": np.array(
            [["x", "y", ""], ["", "", ""], ["q", "x", ""], ["y", "y", "x"]],
            dtype=object,
        ),
        "price": np.array([1.0, np.nan, -3.0, 1e6], "float32"),
    }


def as_tf(raw):
    from tffm.encoder import to_tensors

    return to_tensors(FEATURES, raw)


class FeatureEncoderTest(testing.TestCase):
    def test_id_conventions(self):
        encoded = tffm.FeatureEncoder(FEATURES)(as_tf(raw_batch()))
        # 0 = missing, 1 = OOV, vocabulary from 2 in order.
        self.assertAllEqual(encoded["city"], [3, 1, 0, 2])
        self.assertAllEqual(encoded["user"], [4, 1, 0, 2])
        self.assertAllEqual(
            encoded["tags"], [[2, 3, 0], [0, 0, 0], [1, 2, 0], [3, 3, 2]]
        )
        self.assertAllClose(encoded["price"], raw_batch()["price"])

    def test_hash_matches_farmhash_fingerprint(self):
        farmhash = pytest.importorskip("farmhash")
        encoded = tffm.FeatureEncoder(FEATURES)(as_tf(raw_batch()))
        expected = [
            0 if s == "" else 1 + farmhash.fingerprint64(s) % 97
            for s in raw_batch()["ad"]
        ]
        self.assertAllEqual(encoded["ad"], expected)

    def test_missing_feature_named(self):
        raw = as_tf(raw_batch())
        del raw["tags"]
        with self.assertRaisesRegex(ValueError, "tags"):
            tffm.FeatureEncoder(FEATURES)(raw)

    def test_map_dataset_trains_on_any_backend(self):
        import tensorflow as tf

        encoder = tffm.FeatureEncoder(FEATURES)
        raw = raw_batch()
        ds = tf.data.Dataset.from_tensor_slices(
            (
                {
                    k: v.tolist() if v.dtype == object else v
                    for k, v in raw.items()
                },
                np.array([1, 0, 0, 1]),
            )
        ).batch(2)
        model = tffm.DeepFM(FEATURES, embedding_dim=2, hidden_units=[4])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        history = model.fit(encoder.map_dataset(ds), epochs=2, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"]).all())

    @pytest.mark.skipif(not IS_TF, reason="raw-input models need TensorFlow")
    @pytest.mark.usefixtures("tmp_path_cls")
    def test_composed_model_matches_and_round_trips(self):
        encoder = tffm.FeatureEncoder(FEATURES)
        model = tffm.DeepFM(FEATURES, embedding_dim=3, hidden_units=[4])
        composed = encoder.compose(model, with_logit=True)
        raw = as_tf(raw_batch())
        out = composed(raw)
        expected = model(encoder(raw))
        self.assertAllClose(out["probability"], expected)
        logit = tffm.output_model(model)(encoder(raw))["logit"]
        self.assertAllClose(out["logit"], logit)
        path = os.path.join(self.tmp_path, "raw.keras")
        composed.save(path)
        loaded = keras.saving.load_model(path)  # safe_mode=True
        self.assertAllClose(loaded(raw)["probability"], out["probability"])

    def test_compose_rejects_other_features(self):
        encoder = tffm.FeatureEncoder(FEATURES[:2])
        model = tffm.FM(FEATURES, embedding_dim=2)
        with self.assertRaisesRegex(ValueError, "not built on this encoder"):
            encoder.compose(model)
