"""Input sharding, batch / learning-rate scaling and the per-epoch order."""

import keras
import numpy as np
import pytest

from tffm import distribute
from tffm import testing
from tffm.config import TrainConfig

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
        config = _config(batch_size=256, learning_rate=0.01)
        self.assertEqual(distribute.scale(config, 1)[:2], (256, 0.01))
        self.assertEqual(distribute.scale(config, 4)[:2], (256, 0.01))
        linear = _config(
            batch_size=256, learning_rate=0.01, batch_scaling="linear"
        )
        self.assertEqual(distribute.scale(linear, 4)[:2], (1024, 0.04))
        root = _config(batch_size=256, learning_rate=0.01, batch_scaling="sqrt")
        batch, rate, note = distribute.scale(root, 4)
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

    def test_files_round_robin_with_enough_files(self):
        files = [f"f{i}" for i in range(5)]
        self.assertEqual(
            distribute.shard_files(files, 2, 0), (["f0", "f2", "f4"], None)
        )
        self.assertEqual(
            distribute.shard_files(files, 2, 1), (["f1", "f3"], None)
        )
        self.assertEqual(distribute.shard_files(files, 1, 0), (files, None))

    def test_records_with_fewer_files_each_row_once(self):
        from tffm.training import open_source

        path = self._write("one.csv", range(1, 101))
        config = _config()
        files, shard = distribute.shard_files([path], 3, 0)
        self.assertEqual((files, shard), ([path], (3, 0)))
        seen = []
        for index in range(3):
            _, shard = distribute.shard_files([path], 3, index)
            source = open_source(config, [path], holdout=False, shard=shard)
            seen += _ids(source.dataset)
        # Lines 10, 20, ... are the holdout: every other row exactly once.
        want = [i for i in range(1, 101) if (i + 1) % 10]
        self.assertEqual(sorted(seen), want)


class InputOrderTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_order_is_a_function_of_epoch_and_skip_resumes(self):
        from tffm import resume
        from tffm.training import open_source

        path = self.tmp / "d.csv"
        path.write_text("".join(f"{i},0\n" for i in range(1, 201)))
        order = resume.InputOrder()
        config = _config(
            shuffle_buffer=64,
            validation_data=[str(path)],
            column_names=["id", "label"],
        )
        dataset = open_source(
            config, [str(path)], training=True, order=order
        ).dataset
        passes = {}
        for epoch in (0, 1, 0):
            order.set(epoch, 0)
            passes.setdefault(epoch, []).append(_ids(dataset))
        self.assertEqual(passes[0][0], passes[0][1])  # same epoch, same order
        self.assertNotEqual(passes[0][0], passes[1][0])
        self.assertEqual(sorted(passes[1][0]), list(range(1, 201)))
        # Resuming epoch 1 after 3 steps of 8 lines.
        order.set(1, 24)
        self.assertEqual(_ids(dataset), passes[1][0][24:])
