"""JAX: DataParallel = one device; ModelParallel splits the table by rows.

Each test runs in its own Python with `KERAS_BACKEND=jax` and two host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`, read when
JAX starts), whatever backend runs pytest.
"""

import json
import os

import pytest

from tffm import testing

from . import helpers

_JAX = {
    "KERAS_BACKEND": "jax",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
}

_DATA_PARALLEL = """
import json, sys
import jax
from tffm.train.config import TrainConfig
from tffm.train.pipeline import train
import logging
logging.basicConfig(level=logging.INFO)  # the notes `train` logs
assert len(jax.devices()) == 2, jax.devices()
config = json.loads(sys.argv[1])
for name, out in (("none", sys.argv[2]), ("data-parallel", sys.argv[3])):
    train(TrainConfig.from_dict(dict(config, distribution=name)), out,
          verbose=0)
"""

_MODEL_PARALLEL = """
import json
import jax
import keras
import numpy as np
import tffm
from tffm.train import distribute
features = [
    tffm.Categorical("a", vocabulary=[str(i) for i in range(10)]),
    tffm.Categorical("b", hash_bins=19),
    tffm.MultiCategorical("t", vocabulary=["x", "y", "z"], max_len=3),
    tffm.Numeric("n"),
]
rng = np.random.default_rng(0)
x = {
    "a": rng.integers(0, 12, 64).astype("int32"),
    "b": rng.integers(0, 20, 64).astype("int32"),
    "t": rng.integers(0, 5, (64, 3)).astype("int32"),
    "n": rng.normal(size=64).astype("float32"),
}
keras.utils.set_random_seed(0)
plain = tffm.DeepFM(features, embedding_dim=4, hidden_units=[8])
want = np.asarray(plain.predict(x, verbose=0))
plan = distribute.plan("model-parallel", batch_size=64, learning_rate=1e-3)
with plan.scope():
    sharded = tffm.DeepFM(features, embedding_dim=4, hidden_units=[8])
    sharded.set_weights(plain.get_weights())
    got = np.asarray(sharded.predict(x, verbose=0))
rows = [w for w in sharded.weights
        if w.path.endswith(("/embeddings", "/linear_weights"))]
dense = [w for w in sharded.weights if "kernel" in w.path][0]
print(json.dumps({
    "tables": [
        {
            "spec": [str(a) for a in w.value.sharding.spec],
            "shape": list(w.value.shape),
            "shards": sorted(
                [list(s.data.shape), s.device.id]
                for s in w.value.addressable_shards
            ),
        }
        for w in rows
    ],
    "dense_spec": [str(a) for a in dense.value.sharding.spec],
    "gap": float(np.abs(got - want).max()),
}))
"""


class JaxDistributionTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    @pytest.mark.slow
    def test_data_parallel_matches_one_device(self):
        columns = None
        for name, rows, seed in (("train", 2048, 5), ("valid", 256, 6)):
            path = str(self.tmp / f"{name}.csv")
            helpers.write_planted_csv(path, rows, seed=seed)
            with open(path) as f:
                header, *lines = f.read().splitlines()
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            columns = header.split(",")
        config = dict(
            helpers.CONFIG,
            data=[str(self.tmp / "train.csv")],
            validation_data=[str(self.tmp / "valid.csv")],
            column_names=columns,
            batch_size=128,
            epochs=2,
        )
        one, two = str(self.tmp / "one"), str(self.tmp / "two")
        done = helpers.run_python(
            _DATA_PARALLEL, json.dumps(config), one, two, timeout=300, **_JAX
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertIn(
            "data-parallel: 2 replica(s), global batch 128", done.stderr
        )
        # Saved under JAX, read here as arrays under any backend.
        want = helpers.model_weights(os.path.join(one, "model.keras"))
        got = helpers.model_weights(os.path.join(two, "model.keras"))
        self.assertEqual(len(got), len(want))
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            # One global batch split over two devices; XLA sums the
            # halves' gradients: float32 rounding only.
            self.assertAllClose(a, b, tol=(1e-6, 1e-5), msg=f"weight {i}")

    @pytest.mark.slow
    def test_model_parallel_shards_the_table_and_predicts_the_same(self):
        done = helpers.run_python(_MODEL_PARALLEL, timeout=240, **_JAX)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertNotEmpty(result["tables"])
        for table in result["tables"]:
            rows, *columns = table["shape"]
            self.assertEqual(rows % 2, 0, "the test's features give even rows")
            # Split by rows over the "model" axis, columns whole: each
            # device holds half of the rows.
            self.assertEqual(table["spec"][0], "model")
            self.assertEqual(
                table["shards"],
                [[[rows // 2, *columns], 0], [[rows // 2, *columns], 1]],
            )
        self.assertNotIn("model", result["dense_spec"])  # replicated
        self.assertLessEqual(result["gap"], testing.FP32[0])
