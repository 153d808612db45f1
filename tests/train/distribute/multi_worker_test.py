"""MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1."""

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


def run_cluster(commands, envs, *, timeout):
    """Starts one process per command; waits for all (killed at timeout)."""
    processes = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=helpers.ROOT,
        )
        for command, env in zip(commands, envs, strict=True)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


class MultiWorkerTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    @pytest.mark.slow
    def test_two_workers_end_with_identical_weights(self):
        data = str(self.tmp / "train.csv")
        helpers.write_planted_csv(data, 4000, seed=7)
        config = helpers.write_config(self.tmp / "config.json", epochs=2)
        out = str(self.tmp / "model")
        ports = helpers.free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        command = [
            sys.executable,
            "-m",
            "tffm.cli",
            "train",
            "--config",
            config,
            "--data",
            data,
            "--output",
            out,
            "--distribution",
            "multi-worker",
        ]
        envs = [
            helpers.env(
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                )
            )
            for i in range(2)
        ]
        results = run_cluster([command, command], envs, timeout=240)
        for code, _, err in results:
            self.assertEqual(code, 0, err[-3000:])
        # One file, fewer than 2 files per worker: sharded by record.
        self.assertIn(
            "multi-worker: 2 replica(s), global batch 64 (32 per replica)",
            results[0][2],
        )
        # The chief (worker 0) writes --output, worker 1 a folder in it.
        chief = helpers.model_weights(os.path.join(out, "model.keras"))
        other = helpers.model_weights(
            os.path.join(out, "worker-1", "model.keras")
        )
        self.assertEqual(len(chief), len(other))
        for i, (a, b) in enumerate(zip(chief, other, strict=True)):
            # Each step applies the same all-reduced gradient on both.
            self.assertAllEqual(a, b, msg=f"weight {i}")
        with open(os.path.join(out, "history.json")) as f:
            history = json.load(f)
        self.assertEqual(len(history["loss"]), 2)
