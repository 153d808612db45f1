"""A `tffm train` killed with SIGKILL resumes where it stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.train.distribute import helpers
from tffm import testing
from tffm.train import resume

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the CLI trains with the TensorFlow backend",
)


def _meta(path):
    try:
        with np.load(path) as saved:
            return json.loads(bytes(saved["meta"]).decode())
    except (OSError, ValueError, KeyError, EOFError):
        return None


class ResumeTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def _command(self, out, config):
        return [
            sys.executable,
            "-m",
            "tffm.cli",
            "train",
            "--config",
            config,
            "--data",
            str(self.tmp / "train.csv"),
            "--output",
            out,
        ]

    @pytest.mark.slow
    def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(self):
        helpers.write_planted_csv(str(self.tmp / "train.csv"), 3000, seed=3)
        config = helpers.write_config(
            self.tmp / "config.json", epochs=2, checkpoint_every=4
        )
        whole = str(self.tmp / "whole")
        done = subprocess.run(
            self._command(whole, config),
            capture_output=True,
            text=True,
            timeout=300,
            env=helpers.env(),
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])

        killed = str(self.tmp / "killed")
        backup = os.path.join(killed, "backup", resume.CHECKPOINT)
        process = subprocess.Popen(
            self._command(killed, config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=helpers.env(),
        )
        deadline = time.monotonic() + 240
        meta = None
        # Kill it in its second epoch, after a mid-epoch checkpoint.
        while time.monotonic() < deadline and process.poll() is None:
            meta = _meta(backup)
            if meta and meta["epoch"] == 1 and meta["step"] >= 8:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        process.wait(timeout=60)
        self.assertEqual(process.returncode, -signal.SIGKILL, meta)
        self.assertFalse(os.path.exists(os.path.join(killed, "model.keras")))
        meta = _meta(backup)
        self.assertEqual(meta["epoch"], 1)
        self.assertGreater(meta["step"], 0)

        again = subprocess.run(
            self._command(killed, config),
            capture_output=True,
            text=True,
            timeout=300,
            env=helpers.env(),
        )
        self.assertEqual(again.returncode, 0, again.stderr[-3000:])
        self.assertIn(
            f"resuming from {backup}: epoch 2 of 2, after its step "
            f"{meta['step']}",
            again.stderr,
        )
        # The backup is gone once the outputs are written.
        self.assertFalse(os.path.exists(backup))

        want = helpers.model_weights(os.path.join(whole, "model.keras"))
        got = helpers.model_weights(os.path.join(killed, "model.keras"))
        self.assertEqual(len(got), len(want))
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            # Same batches in the same order, same kernels: equal up to
            # float32 reduction order.
            self.assertAllClose(a, b, msg=f"weight {i}")
        with open(os.path.join(whole, "history.json")) as f:
            want_history = json.load(f)
        with open(os.path.join(killed, "history.json")) as f:
            got_history = json.load(f)
        self.assertEqual(sorted(got_history), sorted(want_history))
        for key in want_history:
            self.assertAllClose(
                got_history[key], want_history[key], tol=(1e-5, 1e-5)
            )


_KILLED_WHILE_WRITING = """
import os, signal, sys
import numpy as np
from tffm.train import resume
path = sys.argv[1]
resume.write_atomic(path, {"meta": np.frombuffer(b'{"v": 1}', np.uint8),
                           "weights/0": np.full(1000, 1.0)})
real_savez = np.savez
def savez_then_die(f, **arrays):
    real_savez(f, **arrays)
    f.flush()
    half = f.tell() // 2
    f.truncate(half)  # half of the new checkpoint is on disk...
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # ...when the process dies
np.savez = savez_then_die
resume.write_atomic(path, {"meta": np.frombuffer(b'{"v": 2}', np.uint8),
                           "weights/0": np.full(1000, 2.0)})
"""


class AtomicCheckpointTest(testing.TestCase):
    def test_kill_during_write_keeps_the_last_good_checkpoint(self):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, resume.CHECKPOINT)
            done = helpers.run_python(_KILLED_WHILE_WRITING, path, timeout=120)
            self.assertEqual(done.returncode, -signal.SIGKILL, done.stderr)
            # The half-written file is left under its temporary name...
            leftovers = [
                n for n in os.listdir(folder) if n != resume.CHECKPOINT
            ]
            self.assertLen(leftovers, 1)
            self.assertIn(".tmp-", leftovers[0])
            with self.assertRaises(Exception):  # noqa: B017 (any failure)
                with np.load(os.path.join(folder, leftovers[0])) as bad:
                    bad["weights/0"]
            # ...and the checkpoint is the last complete one.
            with np.load(path) as saved:
                self.assertEqual(bytes(saved["meta"]), b'{"v": 1}')
                self.assertAllEqual(saved["weights/0"], np.full(1000, 1.0))
            checkpoint = resume.ResumeCheckpoint(folder)
            self.assertEqual(checkpoint.state(), {"v": 1})
            checkpoint.clear()  # removes the leftover too
            self.assertFalse(os.path.exists(folder) and os.listdir(folder))
