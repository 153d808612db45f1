"""Input sharding, batch / learning-rate scaling and the per-epoch order."""

import keras
import numpy as np
import pytest

from tffm import testing
from tffm.train import distribute
from tffm.train.config import TrainConfig

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="reads with tf.data; one backend is enough",
)


def _config(**overrides):
    return TrainConfig.from_dict(
        dict(
            {
                "format": "csv",
                "label": "label",
                "columns": {"id": {"kind": "integer"}},
                "batch_size": 8,
                "shuffle_buffer": 0,
            },
            **overrides,
        )
    )


def _ids(dataset):
    return [int(i) for x, _ in dataset for i in np.asarray(x["id"])]


class ScaleTest(testing.TestCase):
    def test_rules(self):
        scale = distribute.scale
        self.assertEqual(scale(256, 0.01, "global", 1)[:2], (256, 0.01))
        self.assertEqual(scale(256, 0.01, "global", 4)[:2], (256, 0.01))
        self.assertEqual(scale(256, 0.01, "linear", 4)[:2], (1024, 0.04))
        batch, rate, note = scale(256, 0.01, "sqrt", 4)
        self.assertEqual(batch, 1024)
        self.assertAllClose(rate, 0.02)
        self.assertIn("sqrt scaling", note)


class ShardTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def _write(self, name, ids):
        path = self.tmp / name
        path.write_text("id,label\n" + "".join(f"{i},{i % 2}\n" for i in ids))
        return str(path)

    def test_files_round_robin_when_sizes_are_unknown(self):
        files = [f"gs://bucket/f{i}" for i in range(5)]
        self.assertEqual(
            distribute.shard_files(files, 2, 0), (files[0::2], None)
        )
        self.assertEqual(
            distribute.shard_files(files, 2, 1), (files[1::2], None)
        )
        self.assertEqual(distribute.shard_files(files, 1, 0), (files, None))

    def test_whole_files_dealt_by_size_when_they_balance(self):
        sizes = {"a": 300, "b": 100, "c": 100, "d": 100}
        files = []
        for name, size in sizes.items():
            path = self.tmp / name
            path.write_bytes(b"x" * size)
            files.append(str(path))
        # Largest first, each to the lightest: 300 | 100 + 100 + 100.
        self.assertEqual(distribute.shard_files(files, 2, 0), (files[:1], None))
        self.assertEqual(distribute.shard_files(files, 2, 1), (files[1:], None))

    def test_records_when_whole_files_do_not_balance(self):
        files = []
        for name, size in (("a", 3000), ("b", 300)):
            path = self.tmp / name
            path.write_bytes(b"x" * size)
            files.append(str(path))
        # 3000 against 300 bytes: every other line of both instead.
        for index in range(2):
            self.assertEqual(
                distribute.shard_files(files, 2, index), (files, (2, index))
            )
        three = files + [files[1]]  # 3000 | 300 + 300: still uneven
        self.assertEqual(distribute.shard_files(three, 2, 0)[1], (2, 0))

    def test_records_with_fewer_files_each_row_once(self):
        from tffm.data import open_source

        path = self._write("one.csv", range(1, 101))
        config = _config()
        files, shard = distribute.shard_files([path], 3, 0)
        self.assertEqual((files, shard), ([path], (3, 0)))
        seen = []
        for index in range(3):
            _, shard = distribute.shard_files([path], 3, index)
            source = open_source(
                config.layout, [path], batch_size=8, holdout=False, shard=shard
            )
            seen += _ids(source.dataset)
        # Lines 10, 20, ... are the holdout: every other row exactly once.
        want = [i for i in range(1, 101) if (i + 1) % 10]
        self.assertEqual(sorted(seen), want)


class InputOrderTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_order_is_a_function_of_epoch_and_skip_resumes(self):
        from tffm.data import InputOrder
        from tffm.data import open_source

        path = self.tmp / "d.csv"
        path.write_text("".join(f"{i},0\n" for i in range(1, 201)))
        order = InputOrder()
        config = _config(
            shuffle_buffer=64,
            validation_data=[str(path)],
            column_names=["id", "label"],
        )
        dataset = open_source(
            config.layout,
            [str(path)],
            batch_size=config.batch_size,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            order=order,
        ).dataset
        passes = {}
        for epoch in (0, 1, 0):
            order.set(epoch, 0)
            passes.setdefault(epoch, []).append(_ids(dataset))
        self.assertEqual(passes[0][0], passes[0][1])  # same epoch, same order
        self.assertNotEqual(passes[0][0], passes[1][0])
        self.assertEqual(sorted(passes[1][0]), list(range(1, 201)))
        # Resuming epoch 1 after 3 steps of 8 rows.
        order.set(1, 3)
        self.assertEqual(_ids(dataset), passes[1][0][24:])

    def test_masked_rows_still_make_full_batches_and_resume_by_batch(self):
        from tffm.data import InputOrder
        from tffm.data import open_source

        path = self.tmp / "d.csv"
        path.write_text("".join(f"{i},0\n" for i in range(1, 201)))
        order = InputOrder()
        config = _config(shuffle_buffer=64, column_names=["id", "label"])
        dataset = open_source(  # every 10th line held out: 180 rows
            config.layout,
            [str(path)],
            batch_size=config.batch_size,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            holdout=False,
            order=order,
        ).dataset
        order.set(2, 0)
        sizes = [int(label.shape[0]) for _, label in dataset]
        self.assertEqual(sizes, [8] * 22 + [4])
        rows = _ids(dataset)
        self.assertCountEqual(rows, [i for i in range(1, 201) if i % 10])
        order.set(2, 5)  # after 5 steps: the 40 rows they read are skipped
        self.assertEqual(_ids(dataset), rows[40:])
