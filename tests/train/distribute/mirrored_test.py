"""MirroredStrategy over 2 logical CPU devices = one device, same batch."""

import json
import os
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

# Both trainings in one process (logical devices are set before TF starts):
# the same config, once on one device and once mirrored over two.
_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
from tffm.train import distribute
from tffm.train.config import TrainConfig
from tffm.train.pipeline import train
import logging
logging.basicConfig(level=logging.INFO)  # the notes `train` logs
# The same kernels on both sides: XLA (tffm's default on one device)
# reorders float sums, which Adam amplifies where a gradient is near 0;
# distributed steps run without it (see Plan.prepare).
prepare = distribute.Plan.prepare
def prepare_without_xla(plan, model):
    prepare(plan, model)
    model.jit_compile = False
distribute.Plan.prepare = prepare_without_xla
config = json.loads(sys.argv[1])
for name, out in (("none", sys.argv[2]), ("mirrored", sys.argv[3])):
    train(TrainConfig.from_dict(dict(config, distribution=name)), out,
          verbose=0)
print(len(tf.config.list_logical_devices("CPU")), "logical CPUs")
"""


class MirroredTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    @pytest.mark.slow
    def test_two_devices_train_to_the_weights_of_one(self):
        # No header line and a row count that the batch divides: every
        # step's 128 rows split 64 / 64 over the replicas, so the mean of
        # their mean losses is the mean over the step's rows, as on one
        # device.
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
            patience=5,
        )
        one, two = str(self.tmp / "one"), str(self.tmp / "two")
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, json.dumps(config), one, two],
            capture_output=True,
            text=True,
            timeout=300,
            env=helpers.env(),
            cwd=helpers.ROOT,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertIn("2 logical CPUs", done.stdout)
        self.assertIn("mirrored: 2 replica(s), global batch 128", done.stderr)
        want = helpers.model_weights(os.path.join(one, "model.keras"))
        got = helpers.model_weights(os.path.join(two, "model.keras"))
        self.assertEqual(len(got), len(want))
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            # Two replicas sum two half-batch gradients where one device
            # sums one: float32 rounding only (measured <= 6e-8 after 16
            # steps, 2e-7 after 32).
            self.assertAllClose(a, b, tol=(1e-6, 1e-5), msg=f"weight {i}")
