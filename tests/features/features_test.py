import numpy as np
from absl.testing import parameterized

import tffm
from tffm import testing
from tffm.features import check_batch_size
from tffm.features import check_raw
from tffm.features import normalize_features
from tffm.features import table_layout
from tffm.features import table_rows


class FeatureSpecTest(testing.TestCase):
    def test_serialization_round_trip(self):
        features = [
            tffm.Categorical("a", vocabulary=["x", "y"], table="shared"),
            tffm.Categorical("b", hash_bins=10),
            # Not the default: a spec saved with it must keep it.
            tffm.MultiCategorical(
                "c", vocabulary=[1, 2], max_len=5, combiner="mean"
            ),
            tffm.Numeric("d", transform="log1p", mean=1.5, std=2.0),
        ]
        for feature in features:
            config = tffm.serialize_feature(feature)
            self.assertEqual(tffm.deserialize_feature(config), feature)
        self.assertEqual(
            tffm.serialize_feature(features[2])["combiner"], "mean"
        )

    def test_lists_are_summed_unless_told(self):
        self.assertEqual(
            tffm.MultiCategorical("m", hash_bins=3).combiner, "sum"
        )

    def test_numpy_vocabulary_becomes_python(self):
        feature = tffm.Categorical("a", vocabulary=np.array([3, 1, 2]))
        self.assertEqual(feature.vocabulary, (3, 1, 2))
        self.assertEqual(feature.dtype, "int64")
        self.assertEqual(feature.num_ids, 5)

    def test_shared_table_layout(self):
        features = normalize_features(
            [
                tffm.Categorical("item", vocabulary=["i1", "i2"]),
                tffm.MultiCategorical(
                    "history", vocabulary=["i1", "i2"], table="item"
                ),
                tffm.Numeric("n"),
            ]
        )
        self.assertEqual(table_layout(features), {"item": (0, 4), "n": (4, 1)})
        # A shared table counts once: 4 item rows and the numeric's row.
        self.assertEqual(table_rows(features), 5)

    def test_multi_categorical_is_not_a_categorical(self):
        # Shared fields live in a private base, so `isinstance` tells a
        # list feature from a single-valued one.
        multi = tffm.MultiCategorical("m", hash_bins=3)
        self.assertNotIsInstance(multi, tffm.Categorical)
        self.assertFalse(issubclass(tffm.MultiCategorical, tffm.Categorical))
        self.assertNotIsInstance(
            tffm.Categorical("c", hash_bins=3), type(multi)
        )

    def test_encoded_dtype_is_int32_ids_or_float32_values(self):
        # What the model's inputs, the ids-in ONNX and the encoded rows take.
        cases = [
            (tffm.Categorical("a", vocabulary=["x"]), "int32"),
            (tffm.Categorical("b", vocabulary=[7]), "int32"),  # raw int64
            (tffm.MultiCategorical("c", hash_bins=4), "int32"),
            (tffm.Numeric("d"), "float32"),
        ]
        for feature, dtype in cases:
            self.assertEqual(feature.encoded_dtype, dtype, feature.name)
        inputs = tffm.models.base.feature_inputs([f for f, _ in cases])
        self.assertEqual(
            {k: v.dtype for k, v in inputs.items()},
            {f.name: dtype for f, dtype in cases},
        )

    @parameterized.named_parameters(
        (
            "empty_vocab",
            lambda: tffm.Categorical("a", vocabulary=[]),
            "'a'.*must not be empty",
        ),
        (
            "both",
            lambda: tffm.Categorical("a", vocabulary=["x"], hash_bins=3),
            "exactly one",
        ),
        ("neither", lambda: tffm.Categorical("a"), "exactly one"),
        ("bins", lambda: tffm.Categorical("a", hash_bins=0), "hash_bins=0"),
        (
            "mixed",
            lambda: tffm.Categorical("a", vocabulary=["x", 1]),
            "only strings or only integers",
        ),
        (
            "reserved",
            lambda: tffm.Categorical("a", vocabulary=["x", ""]),
            "marks a missing value",
        ),
        (
            "dupes",
            lambda: tffm.Categorical("a", vocabulary=["x", "x"]),
            "duplicates",
        ),
        ("name", lambda: tffm.Numeric("bad name"), "name='bad name'"),
        (
            "combiner",
            lambda: tffm.MultiCategorical("m", hash_bins=3, combiner="max"),
            "combiner='max'",
        ),
        (
            "max_len",
            lambda: tffm.MultiCategorical("m", hash_bins=3, max_len=0),
            "max_len=0",
        ),
        (
            "transform",
            lambda: tffm.Numeric("n", transform="sqrt"),
            "transform='sqrt'",
        ),
        ("std", lambda: tffm.Numeric("n", std=0.0), "std=0.0"),
        (
            "unknown_type",
            lambda: tffm.deserialize_feature({"type": "Image", "name": "p"}),
            "Unknown feature type 'Image'",
        ),
        (
            "unknown_key",
            lambda: tffm.deserialize_feature(
                {"type": "Numeric", "name": "p", "scale": 2}
            ),
            "scale",
        ),
        (
            "duplicate_names",
            lambda: normalize_features([tffm.Numeric("n"), tffm.Numeric("n")]),
            "'n' appears twice",
        ),
        ("no_features", lambda: normalize_features([]), "at least one"),
        (
            "shared_mismatch",
            lambda: normalize_features(
                [
                    tffm.Categorical("a", vocabulary=["x"], table="t"),
                    tffm.Categorical("b", vocabulary=["y"], table="t"),
                ]
            ),
            "share table 't'",
        ),
    )
    def test_invalid(self, make, message):
        with self.assertRaisesRegex(ValueError, message):
            make()


class RawCheckTest(testing.TestCase):
    FEATURES = [
        tffm.Categorical("city", vocabulary=["a", "b"]),
        tffm.MultiCategorical("tags", vocabulary=["x", "y"]),
        tffm.Numeric("price"),
    ]

    def test_batch_size_check_names_the_feature(self):
        columns = {"a": np.zeros(3), "b": np.zeros((3, 2)), "c": np.zeros(2)}
        with self.assertRaisesRegex(
            ValueError,
            "Feature 'c': batch size 2 differs from the other features' 3",
        ):
            check_batch_size(columns)
        self.assertEqual(check_batch_size({"a": np.zeros((4, 2))}), 4)
        self.assertEqual(check_batch_size({}), 0)
        raw = {
            "city": np.array(["a", "b"]),
            "tags": np.array([["x", ""], ["y", "x"]]),
            "price": np.array([1.0, 2.0, 3.0]),
        }
        with self.assertRaisesRegex(ValueError, "Feature 'price': batch size"):
            check_raw(self.FEATURES, raw)

    def test_ragged_list_names_the_feature(self):
        raw = {
            "city": ["a", "b"],
            "tags": [["x"], ["x", "y"]],  # not padded to one length
            "price": [1.0, 2.0],
        }
        with self.assertRaisesRegex(
            ValueError, "Feature 'tags': lists must be padded to one length"
        ):
            check_raw(self.FEATURES, raw)
        raw["tags"] = [["x", ""], ["x", "y"]]
        checked = check_raw(self.FEATURES, raw)
        self.assertEqual(checked["tags"].shape, (2, 2))
        self.assertEqual(checked["price"].dtype, np.float32)


class MetricsTest(testing.TestCase):
    def test_auc_matches_pairwise_count(self):
        y = self.rng.integers(0, 2, 200)
        s = np.round(self.rng.normal(size=200), 1)  # many ties
        pos, neg = s[y == 1], s[y == 0]
        diff = pos[:, None] - neg[None, :]
        expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
        self.assertAllClose(
            tffm.metrics.roc_auc(y, s), expected, tol=(1e-12, 0)
        )

    def test_log_loss_hand_computed(self):
        self.assertAllClose(
            tffm.metrics.log_loss([1, 0], [0.8, 0.4]),
            -(np.log(0.8) + np.log(0.6)) / 2,
            tol=(1e-12, 0),
        )
