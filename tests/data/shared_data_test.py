"""Readers on the real data sets in ../shared/data (skipped when absent)."""

import os

import numpy as np
import pytest

import tffm
from tffm import data
from tffm import testing

SHARED = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "..",
    "shared",
    "data",
)
pytestmark = pytest.mark.skipif(
    not os.path.isdir(SHARED), reason="../shared/data is not present"
)


def path(*parts):
    return os.path.join(SHARED, *parts)


def count(source):
    rows, batches = 0, []
    for features, labels in source.dataset:
        rows += int(labels.shape[0])
        batches.append((features, labels))
    return rows, batches


class SharedDataTest(testing.TestCase):
    def test_criteo_kaggle_tsv(self):
        rows, batches = count(
            data.read_criteo(
                path("criteo_kaggle_format_8k", "train.csv"),
                data.ReadOptions(batch_size=2048),
            )
        )
        self.assertEqual(rows, 7200)
        features, labels = batches[0]
        self.assertLen(features, 39)
        self.assertTrue(set(np.unique(labels.numpy())) <= {0.0, 1.0})
        # I12 is mostly empty in Criteo: missing values come back as NaN.
        self.assertTrue(np.isnan(features["I12"].numpy()).any())

    def test_criteo_csv_with_header_gzip(self):
        kinds = {f"I{i}": "numeric" for i in range(1, 14)}
        kinds.update({f"C{i}": "categorical" for i in range(1, 27)})
        rows, _ = count(
            data.read_csv(
                path("criteo_sampled_10k", "criteo_sampled_data_10k.csv.gz"),
                data.ReadOptions(batch_size=4096),
                kinds=kinds,
                label="label",
            )
        )
        self.assertEqual(rows, 9999)

    def test_frappe_libfm_fields(self):
        source = data.read_libsvm(
            path("frappe_nfm", "frappe.validation.libfm.gz"),
            data.ReadOptions(batch_size=8192),
            fields=[f"f{i}" for i in range(10)],
            binary_labels=True,
        )
        rows, batches = count(source)
        self.assertEqual(rows, 57_722)
        features, labels = batches[0]
        self.assertTrue(set(np.unique(labels.numpy())) <= {0.0, 1.0})
        self.assertTrue(
            all(features[f"f{i}"].numpy().max() < 5382 for i in range(10))
        )

    def test_mushroom_libsvm_and_libffm(self):
        rows, batches = count(
            data.read_libsvm(
                path("mushroom_libsvm", "agaricus_train.txt"),
                data.ReadOptions(batch_size=4096),
                num_features=127,
            )
        )
        self.assertEqual(rows, 6513)
        rows, batches = count(
            data.read_libsvm(
                path("criteo_libffm_xlearn", "small_train.txt"), ffm=True
            )
        )
        self.assertEqual(rows, 200)
        self.assertIn("fields", batches[0][0])

    def test_movielens_sample_multi_valued_genres(self):
        kinds = {
            "user_id": "integer",
            "movie_id": "integer",
            "genres": "list",
            "gender": "categorical",
        }
        _, batches = count(
            data.read_csv(
                path("movielens_deepctr_sample", "movielens_sample.txt"),
                kinds=kinds,
                label="rating",
                max_len={"genres": 4},
            )
        )
        features, labels = batches[0]
        self.assertEqual(features["genres"].shape[1], 4)
        self.assertEqual(
            list(features["genres"].numpy()[0][:2]), [b"Comedy", b"Drama"]
        )

    def test_fm_fits_mushroom_design_matrix(self):
        # Near separable: an FM on the libsvm design matrix gets AUC ~ 1.
        import keras

        from tffm.metrics import roc_auc

        keras.utils.set_random_seed(0)
        train = data.read_libsvm(
            path("mushroom_libsvm", "agaricus_train.txt"),
            data.ReadOptions(batch_size=256, shuffle_buffer=10_000, seed=0),
            num_features=127,
            max_nonzeros=22,
        ).dataset
        test = data.read_libsvm(
            path("mushroom_libsvm", "agaricus_test.txt"),
            data.ReadOptions(batch_size=2048),
            num_features=127,
            max_nonzeros=22,
        ).dataset
        model = tffm.FM(num_features=127, embedding_dim=4)
        model.compile(
            optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy"
        )
        model.fit(train, epochs=3, verbose=0)
        labels, scores = [], []
        for x, y in test:
            scores.append(np.asarray(model(x))[:, 0])
            labels.append(y.numpy())
        self.assertGreater(
            roc_auc(np.concatenate(labels), np.concatenate(scores)), 0.99
        )
