import os
import shutil

import keras
import numpy as np
import pytest

from tffm import constants
from tffm import testing

OUTPUTS = (constants.PROBABILITY, constants.LOGIT)
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export needs the TensorFlow backend",
)


@pytest.fixture(scope="module")
def exported_both(trained, tmp_path_factory):
    """The same model exported plainly and with external data."""
    from export import export_for_serving

    model, _ = trained
    plain = export_for_serving(
        model, str(tmp_path_factory.mktemp("plain")), model_name="ctr"
    )
    external = export_for_serving(
        model,
        str(tmp_path_factory.mktemp("external")),
        model_name="ctr",
        external_data=True,
    )
    return model, plain, external


@pytest.mark.usefixtures("tmp_path_cls")
class ExternalDataTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _exported(self, exported_both):
        self.model, self.plain, self.external = exported_both

    def test_weights_live_in_the_data_files_and_parity_passes(self):
        import onnx

        from export.onnx_data import external_tensors

        # `export_for_serving` raised unless parity passed: check what it
        # measured instead, every output of both artifacts within float32.
        report = self.external.report
        self.assertEqual(
            {(r.artifact, r.output) for r in report.rows},
            {(a, o) for a in ("saved_model", "onnx") for o in OUTPUTS},
        )
        for row in report.rows:
            if row.output == constants.PROBABILITY:  # |b| <= 1
                self.assertLessEqual(row.max_abs, 2e-5, report.table())
        version_dir = self.external.saved_model
        for path in (
            self.external.onnx,
            self.external.onnx_ids,
            os.path.join(version_dir, constants.ONNX_MODEL_FILE),
        ):
            data = path + constants.ONNX_DATA_SUFFIX
            self.assertTrue(os.path.isfile(data), data)
            proto = onnx.load(path, load_external_data=False)
            tensors = list(external_tensors(proto))
            # Every tensor over 1,024 elements is in the data file (the
            # embedding table and the DNN kernels among them).
            self.assertNotEmpty(tensors)
            sizes = {
                int(np.prod(t.dims))
                for t in proto.graph.initializer
                if t.data_location != onnx.TensorProto.EXTERNAL
            }
            self.assertLessEqual(max(sizes, default=0), 1024)
            locations = {
                e.value
                for t in tensors
                for e in t.external_data
                if e.key == "location"
            }
            self.assertEqual(locations, {os.path.basename(data)})
        self.assertFalse(
            os.path.exists(self.plain.onnx + constants.ONNX_DATA_SUFFIX)
        )

    def test_predictions_equal_the_plain_exports(self):
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor

        raw = edge_case_batch(self.model.features, 300, seed=4)
        want = OnnxPredictor(self.plain.onnx).predict(raw)
        for path in (
            self.external.onnx,
            os.path.join(self.external.saved_model, constants.ONNX_MODEL_FILE),
        ):
            got = OnnxPredictor(path).predict(raw)
            for name in want:
                self.assertAllEqual(got[name], want[name])

    def test_version_directory_stands_alone_and_missing_data_is_named(self):
        from export import verify_parity
        from serving import OnnxPredictor

        copy = os.path.join(self.tmp_path, "1")
        shutil.copytree(self.external.saved_model, copy)
        model_file = os.path.join(copy, constants.ONNX_MODEL_FILE)
        report = verify_parity(self.model, saved_model=copy, onnx=model_file)
        self.assertTrue(report.ok, report.table())
        os.remove(model_file + constants.ONNX_DATA_SUFFIX)
        with self.assertRaisesRegex(
            FileNotFoundError, r"model\.onnx\.data.*beside the \.onnx"
        ):
            OnnxPredictor(model_file)

    def test_size_threshold_and_refused_combinations(self):
        from export import export_onnx
        from export import onnx_data

        model = self.model
        expected = sum(np.asarray(w).nbytes for w in model.get_weights())
        self.assertEqual(onnx_data.weight_bytes(model), expected)
        original = onnx_data.EXTERNAL_DATA_BYTES
        try:  # a model over the threshold goes external by default
            import export.onnx as export_module

            export_module.EXTERNAL_DATA_BYTES = expected - 1
            path = os.path.join(self.tmp_path, "auto.onnx")
            export_onnx(model, path)
            self.assertTrue(os.path.isfile(path + constants.ONNX_DATA_SUFFIX))
            export_module.EXTERNAL_DATA_BYTES = expected
            path = os.path.join(self.tmp_path, "small.onnx")
            export_onnx(model, path)
            self.assertFalse(os.path.exists(path + constants.ONNX_DATA_SUFFIX))
        finally:
            export_module.EXTERNAL_DATA_BYTES = original
        with self.assertRaisesRegex(ValueError, "quantize=True, external"):
            export_onnx(
                model,
                os.path.join(self.tmp_path, "q.onnx"),
                quantize=True,
                external_data=True,
            )


@pytest.mark.slow
class LargeModelTest(testing.TestCase):
    """A DeepFM whose table alone exceeds 2 GB (the protobuf limit).

    Needs about 14 GB of memory and 15 GB of disk; `benchmarks/
    large_export.py` runs the same export with timings and memory.
    """

    def test_exports_and_verifies(self):
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        result = subprocess.run(
            [
                sys.executable,
                os.path.join(root, "benchmarks", "large_export.py"),
                "--no-record",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("parity: ok", result.stdout)
