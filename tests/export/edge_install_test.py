"""The edge install: `pip install '.[serving]'` in a fresh venv, no TF/Keras."""

import json
import os
import subprocess
import textwrap

import keras
import numpy as np
import pytest

from tffm import testing

from ..fixtures import serving_venv
from .conftest import FEATURES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="export and serving tests run under TensorFlow",
    ),
]


@pytest.mark.usefixtures("trained", "exported")
class EdgeInstallTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, trained, exported, tmp_path):
        self.model, _ = trained
        self.result = exported
        self.tmp = tmp_path

    def test_serving_extra_predicts_without_tensorflow_or_keras(self):
        from export.edge_cases import edge_case_batch
        from tffm.encoder import KerasPredictor

        bin_folder = serving_venv(self.tmp / "edge")
        python = str(bin_folder / "python")

        raw = edge_case_batch(FEATURES, 16, seed=11)
        expected = KerasPredictor(self.model).predict(raw)["probability"]
        payload = json.dumps({k: v.tolist() for k, v in raw.items()})
        code = textwrap.dedent(
            f"""
            import json, sys
            import numpy as np
            from serving import OnnxPredictor
            raw = json.loads({payload!r})
            raw = {{k: np.array(v, dtype=object if k in ("city", "ad_id",
                   "tags", "history") else None) for k, v in raw.items()}}
            out = OnnxPredictor({self.result.onnx!r}).predict(raw)
            heavy = [m for m in ("tensorflow", "keras", "export")
                     if m in sys.modules]
            assert not heavy, heavy
            print(json.dumps(out["probability"].tolist()))
            """
        )
        # Outside the checkout, so only the installed packages are seen.
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            cwd=str(self.tmp),
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
        self.assertAllClose(got, expected, tol=testing.ORT)
