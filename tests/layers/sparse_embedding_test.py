import numpy as np
from absl.testing import parameterized

from tffm import SparseEmbedding
from tffm import testing


class SparseEmbeddingTest(testing.TestCase):
    def inputs(self):
        indices = np.array([[0, 3, -1], [2, 9, 4], [-1, -1, -1]], "int32")
        values = np.array([[1.0, 2.0, 5.0], [0.5, 7.0, -1.0], [3.0, 3.0, 3.0]])
        return indices, values.astype("float32")

    def test_layer_basics(self):
        self.run_layer_test(
            SparseEmbedding,
            {"num_features": 5, "embedding_dim": 3},
            self.inputs(),
            ((3, 3, 3), (3, 3)),
            expect_trainable_weights=1,
            call_args=2,
        )

    def test_values_scale_rows_and_padding_adds_nothing(self):
        layer = SparseEmbedding(5, 3)
        indices, values = self.inputs()
        emb, lin = layer(indices, values)
        table = testing.to_numpy(layer.table).astype(np.float64)
        expected = np.zeros((3, 3, 4))
        for b in range(3):
            for k in range(3):
                i = indices[b, k]
                if 0 <= i < 5:  # index 9 and -1 are padding
                    expected[b, k] = values[b, k] * table[i]
        self.assertAllClose(emb, expected[:, :, :3])
        self.assertAllClose(lin, expected[:, :, 3])

    @parameterized.named_parameters(
        ("features", {"num_features": 0, "embedding_dim": 2}, "num_features"),
        ("dim", {"num_features": 3, "embedding_dim": -1}, "embedding_dim"),
    )
    def test_invalid_arguments(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            SparseEmbedding(**kwargs)

    def test_mismatched_shapes(self):
        with self.assertRaisesRegex(ValueError, "num_nonzeros"):
            SparseEmbedding(3, 2)(
                np.zeros((2, 3), "int32"), np.zeros((2, 4), "float32")
            )
