import keras
import numpy as np
from absl.testing import parameterized

import tffm
from tffm import FeatureEmbedding
from tffm import testing

FEATURES = [
    tffm.Categorical("city", vocabulary=["a", "b", "c"]),  # rows 0..4
    tffm.Categorical("ad", hash_bins=6),  # rows 5..11
    tffm.MultiCategorical("tags", vocabulary=["x", "y"], combiner="mean"),
    tffm.Numeric("price", transform="log1p", mean=1.0, std=2.0),
    tffm.MultiCategorical(
        "liked", table="city", vocabulary=["a", "b", "c"], combiner="sum"
    ),
]


def build_layer(embedding_dim=3, **kwargs):
    layer = FeatureEmbedding(FEATURES, embedding_dim, **kwargs)
    layer.build({f.name: None for f in FEATURES})
    return layer


class FeatureEmbeddingTest(testing.TestCase):
    def inputs(self):
        return {
            "city": np.array([2, 0, 1, 4]),
            "ad": np.array([6, 0, 3, 1]),
            "tags": np.array([[2, 3, 0], [0, 0, 0], [1, 2, 2], [3, 0, 0]]),
            "price": np.array([0.0, np.nan, 9.0, -5.0], "float32"),
            "liked": np.array([[2, 4], [0, 0], [3, 3], [1, 0]]),
        }

    def test_layer_basics(self):
        self.run_layer_test(
            FeatureEmbedding,
            {"features": FEATURES, "embedding_dim": 3},
            self.inputs(),
            ((4, 5, 3), (4, 5)),
            expect_trainable_weights=2,
        )

    def test_fused_layout_and_shared_table(self):
        layer = build_layer()
        # city 3+2, ad 6+1, tags 2+2, price 1; liked shares city's rows.
        self.assertEqual(layer.num_rows, 5 + 7 + 4 + 1)
        self.assertEqual(tuple(layer.embeddings.shape), (17, 3))
        self.assertEqual(tuple(layer.linear_weights.shape), (17,))
        self.assertLen(layer.trainable_weights, 2)

    def test_values_match_numpy(self):
        layer = build_layer()
        table = testing.fused_table(layer)
        emb, lin = layer(self.inputs())
        emb, lin = testing.to_numpy(emb), testing.to_numpy(lin)
        self.assertEqual(emb.shape, (4, 5, 3))
        self.assertEqual(lin.shape, (4, 5))
        x = self.inputs()
        expected = np.zeros((4, 5, 4))
        for b in range(4):
            expected[b, 0] = table[0 + x["city"][b]]
            expected[b, 1] = table[5 + x["ad"][b]]
            tag_ids = [i for i in x["tags"][b] if i > 0]
            if tag_ids:
                expected[b, 2] = table[[12 + i for i in tag_ids]].mean(0)
            p = x["price"][b]
            p = 0.0 if np.isnan(p) else (np.log1p(max(p, 0.0)) - 1.0) / 2.0
            expected[b, 3] = p * table[16]
            liked = [i for i in x["liked"][b] if i > 0]
            expected[b, 4] = table[liked].sum(0) if liked else 0.0
        self.assertAllClose(emb, expected[:, :, :3])
        self.assertAllClose(lin, expected[:, :, 3])

    def test_out_of_range_ids_read_reserved_row(self):
        layer = build_layer()
        table = testing.fused_table(layer)
        x = self.inputs()
        x["city"] = np.array([5, -3, 99, 1])  # vocab field: OOV row 1
        x["ad"] = np.array([7, -1, 2, 100])  # hashed field: missing row 0
        emb, _ = layer(x)
        emb = testing.to_numpy(emb)
        for b, row in enumerate([1, 1, 1, 1]):
            self.assertAllClose(emb[b, 0], table[row, :3])
        for b, row in enumerate([5, 5, 7, 5]):
            self.assertAllClose(emb[b, 1], table[row, :3])

    def rows_read(self, layer, x):
        """Per example, the fused-table rows (`[v..., w]`) its ids read."""
        table = testing.fused_table(layer)
        out = []
        for b in range(4):
            read = [table[x["city"][b]], table[5 + x["ad"][b]]]
            read += [table[12 + i] for i in x["tags"][b] if i > 0]
            read += [table[i] for i in x["liked"][b] if i > 0]
            if not np.isnan(x["price"][b]):  # a value there reads its row
                read.append(table[16])
            out.append(read)
        return out

    def test_embedding_l2_penalizes_rows_read(self):
        layer = build_layer(embeddings_l2=0.5)
        x = self.inputs()
        layer(x)
        rows = [
            sum(np.sum(r**2) for r in read) for read in self.rows_read(layer, x)
        ]
        self.assertLen(layer.losses, 1)
        self.assertAllClose(layer.losses[0], 0.5 * np.mean(rows))

    @parameterized.named_parameters(
        ("free_biases", 0.5, 0.0),
        ("apart", 0.5, 0.2),
        ("free_vectors", 0.0, 0.2),
    )
    def test_linear_l2_weights_the_linear_weights_apart(
        self, embeddings_l2, linear_l2
    ):
        layer = build_layer(embeddings_l2=embeddings_l2, linear_l2=linear_l2)
        x = self.inputs()
        layer(x)
        rows = [
            sum(
                embeddings_l2 * np.sum(r[:-1] ** 2) + linear_l2 * r[-1] ** 2
                for r in read
            )
            for read in self.rows_read(layer, x)
        ]
        self.assertLen(layer.losses, 1)
        self.assertAllClose(layer.losses[0], np.mean(rows))
        restored = FeatureEmbedding.from_config(layer.get_config())
        self.assertEqual(restored.linear_l2, linear_l2)

    def test_no_penalty_without_l2(self):
        layer = build_layer(embeddings_l2=0.0, linear_l2=0.0)
        layer(self.inputs())
        self.assertEmpty(layer.losses)

    def test_negative_linear_l2_is_refused(self):
        with self.assertRaisesRegex(ValueError, "linear_l2"):
            build_layer(linear_l2=-0.1)

    def test_table_l2_penalizes_whole_table(self):
        layer = build_layer(table_l2=0.25)
        table = testing.fused_table(layer)
        # One L2 term per variable of the table (embeddings, weights).
        self.assertLen(layer.losses, 2)
        self.assertAllClose(
            sum(testing.to_numpy(loss) for loss in layer.losses),
            0.25 * np.sum(table**2),
        )

    def test_embedding_dim_zero_keeps_linear(self):
        layer = build_layer(embedding_dim=0)
        emb, lin = layer(self.inputs())
        self.assertEqual(tuple(emb.shape), (4, 5, 0))
        self.assertEqual(tuple(lin.shape), (4, 5))

    def test_missing_input_names_feature(self):
        layer = FeatureEmbedding(FEATURES, 3)
        x = self.inputs()
        del x["price"]
        with self.assertRaisesRegex(ValueError, "price"):
            layer(x)

    @parameterized.named_parameters(
        ("negative", -1), ("float", 2.5), ("bool", True)
    )
    def test_invalid_embedding_dim(self, value):
        with self.assertRaisesRegex(ValueError, "embedding_dim="):
            FeatureEmbedding(FEATURES, value)

    def test_serialization(self):
        layer = FeatureEmbedding(FEATURES, 3, embeddings_l2=1e-4)
        clone = FeatureEmbedding.from_config(layer.get_config())
        self.assertEqual(clone.features, layer.features)
        self.assertEqual(clone.get_config(), layer.get_config())
        # JSON round trip of the config (what .keras stores).
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        self.assertEqual(restored.features, layer.features)


class TableNormalTest(testing.TestCase):
    def test_moments_seeds_and_config(self):
        import keras

        from tffm.initializers import TableNormal

        init = TableNormal(stddev=0.5, seed=3)
        values = testing.to_numpy(init((2000, 50)))
        self.assertEqual(values.dtype, np.float32)
        # 100,000 draws: sd of the mean 0.0016, of the sd about 0.0011.
        self.assertAllClose(values.mean(), 0.0, tol=(0.01, 0))
        self.assertAllClose(values.std(), 0.5, tol=(0.01, 0))
        self.assertAllClose(testing.to_numpy(init((2000, 50))), values)
        again = keras.initializers.deserialize(
            keras.initializers.serialize(init)
        )
        self.assertAllClose(testing.to_numpy(again((2000, 50))), values)
        keras.utils.set_random_seed(1)
        first = TableNormal()((10, 4))
        keras.utils.set_random_seed(1)
        self.assertAllClose(TableNormal()((10, 4)), first)
        with self.assertRaisesRegex(ValueError, "stddev"):
            TableNormal(stddev=0.0)
