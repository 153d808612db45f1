"""Replicas whose input ends first: no NaN (`fill_empty_batches`)."""

import json
import subprocess
import sys

import keras
import pytest

from tffm import testing

from . import helpers

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute strategies run under TensorFlow",
)

# MirroredStrategy over 2 logical CPUs, with and without the filling.
_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
from tffm.train import distribute
from tffm.train.distribute import plans
from tffm.train.config import TrainConfig
from tffm.train.pipeline import train
import logging
logging.basicConfig(level=logging.INFO)  # the notes `train` logs
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
out = {}
for name in ("filled", "unfilled"):
    if name == "unfilled":
        plans.fill_empty_batches = lambda model: None
    result = train(config, sys.argv[2] + name, verbose=0)
    out[name] = {
        "finite": all(
            bool(np.isfinite(np.asarray(w)).all()) for w in result.model.weights
        ),
        "loss": result.history["loss"],
    }
print(json.dumps(out))
"""


class UnevenInputTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    @pytest.mark.slow
    def test_a_replica_without_rows_trains_on_nothing(self):
        # 1,064 rows and a header line in batches of 64 lines per replica:
        # 17 batches, so the last step has none for the second replica
        # (and the first batch 63 rows, the header's line being no row).
        data = str(self.tmp / "train.csv")
        valid = str(self.tmp / "valid.csv")
        helpers.write_planted_csv(data, 1064, seed=3)
        helpers.write_planted_csv(valid, 200, seed=4)
        config = dict(
            helpers.CONFIG,
            data=[data],
            validation_data=[valid],
            batch_size=128,
            epochs=1,
            batch_norm=True,
            shuffle_buffer=0,
            distribution="mirrored",
        )
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, json.dumps(config)]
            + [str(self.tmp / "out-")],
            capture_output=True,
            text=True,
            timeout=300,
            env=helpers.env(),
            cwd=helpers.ROOT,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertTrue(out["filled"]["finite"])
        self.assertTrue(all(x == x for x in out["filled"]["loss"]))
        # What the filling prevents: Keras' step on 0 rows is NaN, and
        # the all-reduce spreads it to every weight.
        self.assertFalse(out["unfilled"]["finite"])
