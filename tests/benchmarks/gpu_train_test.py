import os
import subprocess
import sys

import pytest

from tffm import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
class GpuTrainQuickTest(testing.TestCase):
    """`benchmarks/gpu_train.py --quick` runs every row on this CPU.

    The script blocks TensorFlow (an import fails), so this also checks
    that `tffm.features`, `tffm.layers` and `tffm.models` train under JAX
    without it, as on the GPU machine.
    """

    def test_every_row_trains_without_tensorflow(self):
        pytest.importorskip("jax")
        pytest.importorskip("torch")
        result = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "benchmarks", "gpu_train.py"),
                "--quick",
                "--no-record",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("TensorFlow blocked (not imported)", result.stdout)
        rows = [
            line
            for line in result.stdout.splitlines()
            if line.startswith("| ")
            and any(f"({p})" in line for p in ("fp32", "tf32", "bf16"))
        ]
        self.assertLen(rows, 15)  # 5 rows x 3 precisions
        for line in rows:
            loss = float(line.rstrip(" |").rsplit("|", 1)[1])
            self.assertBetween(loss, 0.05, 1.0)
