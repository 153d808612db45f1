"""`benchmarks/distributed_gpu.py --quick` runs on CPU without TensorFlow."""

import json
import os

import pytest

from tests.train.distribute import helpers
from tffm import testing

# TensorFlow made unimportable, as on the GPU machine (JAX, no TF).
_WITHOUT_TF = """
import runpy, sys
sys.modules["tensorflow"] = None
sys.argv = [sys.argv[0], "--quick", "--host-devices", "2"]
runpy.run_path(%r, run_name="__main__")
"""


class DistributedGpuBenchmarkTest(testing.TestCase):
    @pytest.mark.slow
    def test_quick_run_without_tensorflow(self):
        script = os.path.join(helpers.ROOT, "benchmarks", "distributed_gpu.py")
        done = helpers.run_python(
            _WITHOUT_TF % script, timeout=240, KERAS_BACKEND="jax"
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        out = done.stdout
        summary = json.loads(out[out.index("{") : out.rindex("}") + 1])
        self.assertEqual(summary["devices"], "2 x cpu")
        self.assertFalse(summary["tensorflow_imported"])
        self.assertGreater(summary["single_device_rows_per_s"], 0)
        self.assertGreater(summary["data_parallel_rows_per_s"], 0)
        # The same training on 1 and 2 devices: float32 rounding apart.
        self.assertLess(summary["max_weight_gap"], 1e-5)
