import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import data
from tffm import testing
from tffm.data import ReadOptions
from tffm.data.encoded_keras import EncodedPyDataset
from tffm.train.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
NUM_ROWS = 1_003  # not a multiple of any batch or shard size below
FEATURES = [
    # Row ids 1..NUM_ROWS, unique: which input row an output row is.
    tffm.Categorical("row", hash_bins=NUM_ROWS),
    tffm.Categorical("ad_id", hash_bins=1_000_000),
    tffm.Categorical("user", vocabulary=[11, 22, 33]),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.MultiCategorical("history", hash_bins=50, max_len=5),
    tffm.Numeric("price", transform="log1p"),
    tffm.Numeric("score"),
]


def encoded_columns(rng, num_rows=NUM_ROWS):
    """Encoded values (what `FeatureEncoder` outputs), every edge case."""
    columns = {
        "row": rng.permutation(np.arange(1, num_rows + 1)),
        "ad_id": rng.integers(0, 1_000_001, num_rows),  # int64, as Keras
        "user": rng.integers(0, 5, num_rows).astype(np.int32),
        "tags": rng.integers(0, 5, (num_rows, 3)),
        "history": rng.integers(0, 51, (num_rows, 5)),
        "price": rng.standard_normal(num_rows).astype(np.float32) * 1e30,
        "score": rng.standard_normal(num_rows).astype(np.float32),
    }
    columns["ad_id"][:3] = [0, 1, 1_000_000]  # missing, smallest, largest
    columns["tags"][:2] = 0  # empty lists
    score = columns["score"]
    score[::7] = np.nan
    # A NaN with a payload, -0.0, subnormal and extreme finite values: the
    # round trip keeps bits, not just values.
    score[1] = np.array([0x7FC12345], np.int32).view(np.float32)[0]
    score[2] = -0.0
    score[3] = np.float32(1e-45)
    score[4] = np.finfo(np.float32).max
    label = (rng.random(num_rows) < 0.3).astype(np.float32)
    return columns, label


def bits(x):
    x = np.asarray(x)
    return x.view(np.int32) if x.dtype == np.float32 else x


def in_batches(columns, label, size):
    for begin in range(0, len(label), size):
        yield (
            {k: v[begin : begin + size] for k, v in columns.items()},
            label[begin : begin + size],
        )


def tf_batches(source):
    return [
        ({k: v.numpy() for k, v in f.items()}, y.numpy())
        for f, y in source.dataset
    ]


class EncodedTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def write(self, name="enc", rows_per_shard=97, open_shards=3, **kwargs):
        columns, label = encoded_columns(self.rng)
        path = str(self.tmp / name)
        data.write_encoded(
            in_batches(columns, label, 100),
            path,
            FEATURES,
            rows_per_shard=rows_per_shard,
            open_shards=open_shards,
            **kwargs,
        )
        return path, columns, label

    def assert_exact_epoch(self, batches, columns, label, batch_size):
        """Every input row exactly once, each value bit for bit."""
        by_row = np.argsort(columns["row"])  # row id - 1 -> input index
        seen = []
        for i, (features, y) in enumerate(batches):
            self.assertEqual(sorted(features), sorted(columns))
            last = i == len(batches) - 1
            if not last:
                self.assertLen(y, batch_size)
            self.assertEqual(y.dtype, np.float32)
            index = by_row[features["row"] - 1]
            for name, value in features.items():
                self.assertEqual(
                    value.dtype,
                    np.float32 if name in ("price", "score") else np.int32,
                )
                self.assertAllEqual(bits(value), bits(columns[name])[index])
            self.assertAllEqual(bits(y), bits(label)[index])
            seen.append(features["row"])
        seen = np.concatenate(seen)
        self.assertAllEqual(np.sort(seen), np.arange(1, NUM_ROWS + 1))
        return seen

    @parameterized.named_parameters(
        ("in_order", 0, 64),
        ("shuffled_one_shard_windows", 1, 64),
        ("shuffled_many_shard_windows", 300, 64),
        ("batch_larger_than_windows", 150, 500),
    )
    def test_round_trip_is_exact(self, shuffle_buffer, batch_size):
        path, columns, label = self.write()
        encoded = data.EncodedData(path)
        self.assertEqual(encoded.num_rows, NUM_ROWS)
        options = ReadOptions(
            batch_size=batch_size, shuffle_buffer=shuffle_buffer, seed=5
        )
        batches = list(encoded.batches(options))
        self.assertLen(batches, encoded.num_batches(options))
        self.assert_exact_epoch(batches, columns, label, batch_size)
        # The tf.data reader gives the same batches, dtypes and shapes.
        tf_side = tf_batches(data.read_encoded(path, options))
        self.assertLen(tf_side, len(batches))
        for (f1, y1), (f2, y2) in zip(batches, tf_side, strict=True):
            self.assertAllEqual(bits(y1), bits(y2))
            for name in f1:
                self.assertEqual(f1[name].dtype, f2[name].dtype)
                self.assertEqual(f1[name].shape, f2[name].shape)
                self.assertAllEqual(bits(f1[name]), bits(f2[name]))

    def test_epochs_reshuffle_reproducibly(self):
        path, columns, label = self.write()
        encoded = data.EncodedData(path)
        options = ReadOptions(batch_size=64, shuffle_buffer=200, seed=3)
        orders = []
        for epoch in range(3):
            batches = list(encoded.batches(options, epoch=epoch))
            orders.append(self.assert_exact_epoch(batches, columns, label, 64))
        self.assertFalse(np.array_equal(orders[0], orders[1]))
        self.assertFalse(np.array_equal(orders[1], orders[2]))
        again = [f["row"] for f, _ in encoded.batches(options, epoch=1)]
        self.assertAllEqual(np.concatenate(again), orders[1])
        # Each pass over the tf.data dataset is the next epoch; `repeat`
        # chains them.
        source = data.read_encoded(path, options)
        for epoch in range(2):
            rows = np.concatenate([f["row"] for f, _ in tf_batches(source)])
            self.assertAllEqual(rows, orders[epoch])
        repeated = data.read_encoded(
            path,
            ReadOptions(batch_size=64, shuffle_buffer=200, seed=3, repeat=True),
        )
        per_epoch = encoded.num_batches(options)
        rows = [
            f["row"].numpy() for f, _ in repeated.dataset.take(2 * per_epoch)
        ]
        self.assertAllEqual(np.concatenate(rows), np.concatenate(orders[:2]))
        endless = encoded.batches(
            ReadOptions(batch_size=64, shuffle_buffer=200, seed=3, repeat=True)
        )
        rows = [next(endless)[0]["row"] for _ in range(2 * per_epoch)]
        self.assertAllEqual(np.concatenate(rows), np.concatenate(orders[:2]))

    def test_shuffling_mixes_beyond_the_input_order(self):
        path, columns, _ = self.write(rows_per_shard=200, open_shards=4)
        encoded = data.EncodedData(path)
        # Write-time mixing: each shard holds rows from all over the input.
        first = [
            np.load(s.path, mmap_mode="r")[:, 0] for s in encoded.shards[:4]
        ]
        input_index = np.argsort(columns["row"])
        for ids in first:
            spread = np.ptp(input_index[np.asarray(ids) - 1])
            self.assertGreater(spread, 500)
        # Read-time: a batch draws from a whole window, not a run of rows.
        options = ReadOptions(batch_size=64, shuffle_buffer=400, seed=0)
        features, _ = next(encoded.batches(options))
        self.assertGreater(np.ptp(input_index[features["row"] - 1]), 500)

    def test_in_order_reads_shards_as_written(self):
        path, _, _ = self.write(open_shards=1)  # one shard at a time
        encoded = data.EncodedData(path)
        rows = np.concatenate(
            [f["row"] for f, _ in encoded.batches(ReadOptions(batch_size=10))]
        )
        expected = np.concatenate(
            [np.load(s.path)[:, 0] for s in encoded.shards]
        )
        self.assertAllEqual(rows, expected)

    def test_workers_read_disjoint_shards_covering_all_rows(self):
        path, columns, _ = self.write()
        encoded = data.EncodedData(path)
        parts = []
        for index in range(3):
            options = ReadOptions(
                batch_size=50, shuffle_buffer=300, seed=1, shard=(3, index)
            )
            parts.append(
                np.concatenate([f["row"] for f, _ in encoded.batches(options)])
            )
        rows = np.concatenate(parts)
        self.assertAllEqual(np.sort(rows), np.arange(1, NUM_ROWS + 1))
        with self.assertRaisesRegex(ValueError, "cannot be split among 99"):
            encoded.num_batches(ReadOptions(shard=(99, 0)))

    def test_start_skips_batches_of_the_epoch(self):
        path, _, _ = self.write()
        encoded = data.EncodedData(path)
        options = ReadOptions(batch_size=64, shuffle_buffer=200, seed=2)
        full = [f["row"] for f, _ in encoded.batches(options, epoch=4)]
        tail = [f["row"] for f, _ in encoded.batches(options, epoch=4, start=5)]
        self.assertLen(tail, len(full) - 5)
        for a, b in zip(full[5:], tail, strict=True):
            self.assertAllEqual(a, b)

    def test_py_dataset_matches_and_moves_epochs(self):
        path, columns, label = self.write()
        encoded = data.EncodedData(path)
        options = ReadOptions(batch_size=64, shuffle_buffer=200, seed=9)
        dataset = EncodedPyDataset(encoded, options)
        for epoch in range(2):
            expected = list(encoded.batches(options, epoch=epoch))
            self.assertLen(dataset, len(expected))
            for i in reversed(range(len(dataset))):  # any order
                f, y = dataset[i]
                self.assertAllEqual(bits(y), bits(expected[i][1]))
                self.assertAllEqual(
                    f["score"].view(np.int32),
                    expected[i][0]["score"].view(np.int32),
                )
            dataset.on_epoch_end()
        with self.assertRaises(IndexError):
            dataset[len(dataset)]

    def test_model_fit_takes_both_readers(self):
        import keras

        path, _, _ = self.write()
        options = ReadOptions(batch_size=128, shuffle_buffer=300, seed=0)
        keras.utils.set_random_seed(0)
        model = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[8])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        source = data.read_encoded(path, options)
        self.assertEqual(int(source.dataset.cardinality()), -(-NUM_ROWS // 128))
        history = model.fit(source.dataset, epochs=2, verbose=0, shuffle=False)
        self.assertLen(history.history["loss"], 2)
        encoded = data.EncodedData(path)
        history = model.fit(
            EncodedPyDataset(encoded, options),
            epochs=2,
            verbose=0,
            shuffle=False,
        )
        self.assertTrue(np.isfinite(history.history["loss"]).all())

    def test_numpy_reader_and_jax_training_need_no_tensorflow(self):
        path, _, _ = self.write()
        script = textwrap.dedent(
            f"""
            import sys
            sys.modules["tensorflow"] = None  # any TF import fails
            import numpy as np
            import keras
            import tffm
            from tffm.data.encoded import EncodedData
            from tffm.data.encoded_keras import EncodedPyDataset
            from tffm.data.readers import ReadOptions
            encoded = EncodedData({path!r})
            options = ReadOptions(batch_size=128, shuffle_buffer=300, seed=0)
            model = tffm.DeepFM(encoded.features, embedding_dim=4,
                                hidden_units=[8])
            model.compile(optimizer="adam", loss="binary_crossentropy")
            history = model.fit(EncodedPyDataset(encoded, options), epochs=2,
                                verbose=0)
            assert np.isfinite(history.history["loss"]).all()
            assert "tensorflow" not in {{
                m.split(".")[0] for m in sys.modules if sys.modules[m]
            }}
            print("trained", keras.backend.backend())
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("trained jax", result.stdout)

    def test_encode_files_matches_the_text_reader_and_encoder(self):
        lines = ["click,site,price,tags"]
        sites = ["a", "b", "", "zzz", "é"]
        for i in range(250):
            price = "" if i % 9 == 0 else f"{i * 0.5}"
            tags = "|".join(["x", "y", "q"][: i % 4])
            lines.append(f"{i % 2},{sites[i % 5]},{price},{tags}")
        csv = self.tmp / "train.csv"
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = TrainConfig(
            format="csv",
            label="click",
            columns={
                "site": {"kind": "categorical", "hash_bins": 100},
                "price": {"kind": "numeric"},
                "tags": {"kind": "list", "max_len": 2},
            },
            batch_size=32,
        )
        features = [
            tffm.Categorical("site", hash_bins=100),
            tffm.Numeric("price"),
            tffm.MultiCategorical("tags", vocabulary=["x", "y"], max_len=2),
        ]
        out = str(self.tmp / "encoded")
        for holdout in (None, False, True):
            encoded = data.encode_files(
                dataclasses_replace(config, holdout_every=5).layout,
                str(csv),
                out,
                features,
                holdout=holdout,
                batch_size=config.batch_size,
                overwrite=True,
            )
            # Reference: the text reader and the encoder, in TensorFlow.
            source = data.read_csv(
                str(csv),
                ReadOptions(
                    batch_size=1000,
                    holdout_every=None if holdout is None else 5,
                    holdout=bool(holdout),
                ),
                kinds={
                    "site": "categorical",
                    "price": "numeric",
                    "tags": "list",
                },
                label="click",
                max_len={"tags": 2},
            )
            raw, want_label = next(iter(source.dataset))
            want = tffm.FeatureEncoder(features)(raw)
            got = list(encoded.batches(ReadOptions(batch_size=1000)))
            self.assertLen(got, 1)
            got_features, got_label = got[0]
            self.assertLen(
                got_label, {None: 250, False: 200, True: 50}[holdout]
            )
            # Shards mix rows: match them on the row's content.
            order_got = np.lexsort([got_label, *bits_columns(got_features)])
            want = {k: np.asarray(v) for k, v in want.items()}
            order_want = np.lexsort(
                [np.asarray(want_label), *bits_columns(want)]
            )
            for name in got_features:
                self.assertAllEqual(
                    bits(got_features[name][order_got]),
                    bits(want[name].astype(got_features[name].dtype))[
                        order_want
                    ],
                )
            manifest = json.loads(
                open(os.path.join(out, "manifest.json")).read()
            )
            self.assertEqual(
                tffm.features.features_from_json(
                    json.dumps(manifest["features"])
                ),
                tuple(features),
            )

    def test_refuses_to_replace_and_checks_what_it_writes(self):
        path, _, _ = self.write()
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            self.write()
        columns, label = encoded_columns(self.rng)
        bad = dict(columns, user=np.full(NUM_ROWS, 5))
        with self.assertRaisesRegex(ValueError, r"'user'.*\[0, 5\)"):
            data.write_encoded([(bad, label)], str(self.tmp / "x"), FEATURES)
        raw = dict(columns, user=np.array(["11"] * NUM_ROWS))
        with self.assertRaisesRegex(ValueError, "FeatureEncoder"):
            data.write_encoded([(raw, label)], str(self.tmp / "x"), FEATURES)
        wide = dict(columns, tags=np.zeros((NUM_ROWS, 4), np.int32))
        with self.assertRaisesRegex(ValueError, "max_len=3"):
            data.write_encoded([(wide, label)], str(self.tmp / "x"), FEATURES)
        with self.assertRaisesRegex(ValueError, "No rows"):
            data.write_encoded([], str(self.tmp / "x"), FEATURES)
        # Nothing half-written is left behind.
        self.assertEqual(sorted(os.listdir(self.tmp)), ["enc"])

    def test_bad_manifests_and_shards_name_the_file(self):
        path, _, _ = self.write()
        manifest = os.path.join(path, "manifest.json")
        good = json.loads(open(manifest).read())
        shard = os.path.join(path, good["shards"][0]["file"])

        def broken(change):
            value = json.loads(json.dumps(good))
            change(value)
            with open(manifest, "w") as f:
                json.dump(value, f)

        cases = [
            (lambda m: m.update(format="parquet"), "not a tffm encoded"),
            (lambda m: m.update(version=2), "version 2"),
            (lambda m: m.update(rows=5), "`rows` is 5"),
            (lambda m: m["features"][0].update(hash_bins=-1), "hash_bins"),
            (lambda m: m.pop("shards"), "`shards` must be a list"),
            (lambda m: m["shards"][0].update(file="../x.npy"), "each shard"),
            (lambda m: m["columns"].reverse(), "do not match the layout"),
            (
                lambda m: m["shards"][0].update(file="gone.npy"),
                "gone.npy: shard listed in the manifest is missing",
            ),
        ]
        for change, message in cases:
            broken(change)
            with self.assertRaisesRegex(
                (ValueError, FileNotFoundError), message
            ) as caught:
                data.EncodedData(path)
            self.assertIn(path, str(caught.exception))
        with open(manifest, "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "manifest.json: not valid"):
            data.read_encoded(path)
        broken(lambda m: None)
        with open(shard, "r+b") as f:
            f.truncate(os.path.getsize(shard) - 4)
        with self.assertRaisesRegex(ValueError, f"{shard}: .* truncated"):
            data.EncodedData(path)
        with self.assertRaisesRegex(FileNotFoundError, "not an encoded"):
            data.EncodedData(str(self.tmp))
        with self.assertRaisesRegex(ValueError, "holdout_every"):
            encoded_path, _, _ = self.write("other")
            data.EncodedData(encoded_path).num_batches(
                ReadOptions(holdout_every=10)
            )

    def test_a_shard_with_a_wrong_header_is_refused(self):
        path, _, _ = self.write()
        encoded = data.EncodedData(path)
        shard = encoded.shards[0]
        with open(shard.path, "r+b") as f:
            f.seek(10)
            f.write(b"{'descr': '>i4'")
        with self.assertRaisesRegex(ValueError, f"{shard.path}: its .npy"):
            data.EncodedData(path)


def bits_columns(features):
    """Sort keys: every column's bits, list columns one key per slot."""
    keys = []
    for name in sorted(features):
        value = bits(np.asarray(features[name]))
        keys += list(value.T) if value.ndim == 2 else [value]
    return keys


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)
