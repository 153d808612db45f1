"""ParameterServerStrategy: 1 chief, 2 workers, 1 ps on 127.0.0.1."""

import json
import os
import re
import sys
from unittest import mock

import keras
import numpy as np
import pytest

from tffm import testing
from tffm.train import distribute
from tffm.train.config import TrainConfig

from . import helpers
from .multi_worker_test import run_cluster

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute strategies run under TensorFlow",
)

# The chief: `tffm train`'s own code, with a look at the variables the
# workers trained (`replicate` made them on the ps): their values and
# devices, read from the ps after the fit, next to what was saved.
_CHIEF = """
import json, os, sys
import keras
import numpy as np
from tffm.train.distribute import parameter_server
from tffm.train.config import TrainConfig
from tffm.train.pipeline import train
import logging
logging.basicConfig(level=logging.INFO)  # the notes `train` logs
made = []
replicate = parameter_server.replicate
def spy(*args, **kwargs):
    made.append(replicate(*args, **kwargs))
    return made[-1]
parameter_server.replicate = spy
config = TrainConfig.from_file(
    sys.argv[1], data=[sys.argv[2]], distribution="parameter-server"
)
train(config, sys.argv[3])
remote = made[0]
np.savez(
    os.path.join(sys.argv[3], "ps_weights.npz"),
    *[keras.ops.convert_to_numpy(w) for w in remote.weights],
)
print(json.dumps({
    "devices": [w.value.device for w in remote.weights],
    "iterations": int(keras.ops.convert_to_numpy(remote.optimizer.iterations)),
}))
"""


class ParameterServerTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    @pytest.mark.slow
    def test_workers_train_the_variables_on_the_ps(self):
        data = str(self.tmp / "train.csv")
        helpers.write_planted_csv(data, 3000, seed=7)
        # No early stopping before the last epoch and no calibration after
        # it: the saved model is the last epoch's, as the ps holds it.
        config = helpers.write_config(
            self.tmp / "config.json",
            epochs=2,
            warmup_epochs=2,
            calibrate=False,
        )
        out = str(self.tmp / "model")
        ports = helpers.free_ports(4)
        cluster = {
            "chief": [f"127.0.0.1:{ports[0]}"],
            "worker": [f"127.0.0.1:{p}" for p in ports[1:3]],
            "ps": [f"127.0.0.1:{ports[3]}"],
        }
        tasks = [("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0)]
        train = [sys.executable, "-m", "tffm.cli", "train", "--config"]
        train += [config, "--data", data, "--output", out]
        train += ["--distribution", "parameter-server"]
        commands = [[sys.executable, "-c", _CHIEF, config, data, out]]
        commands += [train] * 3  # the workers and the ps: same command
        envs = [
            helpers.env(
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": t, "index": i}}
                ),
                CUDA_VISIBLE_DEVICES="",
            )
            for t, i in tasks
        ]
        results = run_cluster(commands, envs, timeout=300)
        for (task, index), (code, _, err) in zip(tasks, results, strict=True):
            self.assertEqual(code, 0, f"{task} {index}: {err[-3000:]}")
            if task != "chief":
                # They serve until the chief is gone, then exit by themselves.
                self.assertIn(f"parameter-server {task} {index} serving", err)
        chief_out, chief_err = results[0][1], results[0][2]
        # Both workers trained in every epoch (the chief says how many
        # steps each took: each read its every other line once).
        steps = re.findall(r"per worker \[(\d+), (\d+)\]", chief_err)
        self.assertLen(steps, 2, chief_err[-3000:])
        # Worker i reads every other line from line i + 1 of the file (a
        # header and 3,000 rows); the holdout (line numbers divisible by
        # 10) falls to worker 1. Batches are 64 rows: 1,500 and 1,200 rows.
        rows = [
            sum(
                1
                for line in range(2, 3002)
                if (line - 1) % 2 == worker and line % 10
            )
            for worker in (0, 1)
        ]
        expected = [-(-n // 64) for n in rows]
        self.assertEqual(expected, [24, 19])
        for per_worker in steps:
            self.assertEqual([int(n) for n in per_worker], expected)
        with open(os.path.join(out, "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["loss"], 2)
        self.assertLess(history["loss"][1], history["loss"][0])
        # One set of variables, on the ps, which every step updated (no
        # step's update lost to another's: `_add_in_place`); the chief
        # saved their values.
        seen = json.loads(chief_out.strip().splitlines()[-1])
        self.assertEqual(seen["iterations"], 2 * sum(expected))
        self.assertNotEmpty(seen["devices"])
        for device in seen["devices"]:
            self.assertIn("/job:ps/", device)
        saved = helpers.model_weights(os.path.join(out, "model.keras"))
        with np.load(os.path.join(out, "ps_weights.npz")) as f:
            on_ps = [f[f"arr_{i}"] for i in range(len(f.files))]
        self.assertEqual(len(on_ps), len(saved))
        for i, (a, b) in enumerate(zip(on_ps, saved, strict=True)):
            self.assertAllEqual(a, b, msg=f"weight {i}")
        self.assertFalse(os.path.exists(os.path.join(out, "worker-1")))


def _plan_of(config):
    return distribute.plan(
        config.distribution,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        batch_scaling=config.batch_scaling,
        data_format=config.format,
    )


class ParameterServerPlanTest(testing.TestCase):
    def _plan(self, task, **overrides):
        cluster = {
            "chief": ["127.0.0.1:1"],
            "worker": ["127.0.0.1:2", "127.0.0.1:3"],
            "ps": ["127.0.0.1:4"],
        }
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
        values = {"format": "criteo", "data": ["x.tsv"]}
        values.update(overrides, distribution="parameter-server")
        config = TrainConfig.from_dict(values)
        with mock.patch.dict(os.environ, env):
            return _plan_of(config)

    def test_workers_and_ps_serve(self):
        plan = self._plan({"type": "worker", "index": 1})
        self.assertTrue(plan.serves)
        self.assertFalse(plan.is_chief)
        self.assertEqual((plan.worker, plan.num_workers), (1, 2))
        self.assertTrue(self._plan({"type": "ps", "index": 0}).serves)

    def test_needs_tf_config(self):
        config = TrainConfig.from_dict(
            dict(format="criteo", distribution="parameter-server")
        )
        with mock.patch.dict(os.environ, {"TF_CONFIG": ""}):
            with self.assertRaisesRegex(ValueError, "needs TF_CONFIG"):
                _plan_of(config)

    def test_refuses_generator_formats(self):
        with self.assertRaisesRegex(ValueError, "from_generator"):
            self._plan(
                {"type": "chief", "index": 0},
                format="parquet",
                columns={"a": {"kind": "categorical"}},
            )
