import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tffm
from tffm import testing
from tffm.encoder import to_tensors

from .conftest import FEATURES

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export and serving tests run under TensorFlow",
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def unchecked_tensors(raw):
    """Raw values as tensors, unchecked: what a client of the bare signature
    may send (`to_tensors` would refuse the bad ones before TensorFlow)."""
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in raw.items()}


def run_isolated(code: str, blocked: list[str]) -> str:
    """Runs `code` in a fresh Python where `blocked` modules can't import."""
    guard = textwrap.dedent(
        f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None  # any import of it raises ImportError
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-c", guard + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.usefixtures("trained", "exported")
class ExportTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, trained, exported):
        self.model, self.encoder = trained
        self.result = exported

    def test_layout_and_parity_report(self):
        r = self.result
        self.assertTrue(
            r.saved_model.endswith(os.path.join("saved_model", "ctr", "3"))
        )
        self.assertTrue(
            os.path.isfile(os.path.join(r.saved_model, "saved_model.pb"))
        )
        self.assertTrue(os.path.isfile(r.onnx) and os.path.isfile(r.onnx_ids))
        # The parity table published beside the ONNX file is the report's.
        parity_md = os.path.join(os.path.dirname(r.onnx), "ctr-3.parity.md")
        self.assertEqual(open(parity_md).read(), r.report.table() + "\n")
        # Each output of each artifact, at batch sizes 1, 64 and 10,000.
        seen = {(row.batch, row.artifact, row.output) for row in r.report.rows}
        self.assertLen(seen, 3 * 2 * 2)
        self.assertIn(("edge-10000", "onnx", "logit"), seen)
        self.assertEqual(
            {row.shape for row in r.report.rows if row.batch == "edge-1"},
            {(1, 1)},
        )
        leftovers = [
            n
            for n in os.listdir(
                os.path.dirname(os.path.dirname(os.path.dirname(r.saved_model)))
            )
            if n.startswith(".staging")
        ]
        self.assertEmpty(leftovers)

    def test_models_config(self):
        text = open(self.result.models_config).read()
        self.assertIn('name: "ctr"', text)
        self.assertIn('base_path: "/models/ctr"', text)
        self.assertIn('model_platform: "tensorflow"', text)

    def test_signature_as_tf_serving_sees_it(self):
        import tensorflow as tf

        loaded = tf.saved_model.load(self.result.saved_model)
        sig = loaded.signatures["serving_default"]
        _, inputs = sig.structured_input_signature
        expected = {
            "city": (tf.string, [None]),
            "ad_id": (tf.string, [None]),
            "user": (tf.int64, [None]),
            "tags": (tf.string, [None, None]),
            "history": (tf.string, [None, None]),
            "price": (tf.float32, [None]),
            "score": (tf.float32, [None]),
        }
        self.assertEqual(
            {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()},
            expected,
        )
        self.assertEqual(
            {
                k: (v.dtype, v.shape.as_list())
                for k, v in sig.structured_outputs.items()
            },
            {
                "probability": (tf.float32, [None, 1]),
                "logit": (tf.float32, [None, 1]),
            },
        )

    def test_saved_model_has_no_python_ops_and_runs_without_tffm(self):
        from export.edge_cases import edge_case_batch

        raw = edge_case_batch(FEATURES, 20, seed=5)
        expected = np.asarray(
            self.encoder.compose(self.model)(to_tensors(FEATURES, raw))
        )
        payload = {k: v.tolist() for k, v in raw.items()}
        out = run_isolated(
            f"""
            import json, numpy as np, tensorflow as tf
            loaded = tf.saved_model.load({self.result.saved_model!r})
            graph = loaded.signatures["serving_default"].graph.as_graph_def()
            ops = {{n.op for n in graph.node}}
            for f in graph.library.function:
                ops |= {{n.op for n in f.node_def}}
            python_ops = {{"PyFunc", "EagerPyFunc", "PyFuncStateless"}}
            assert not ops & python_ops, ops
            raw = json.loads({json.dumps(json.dumps(payload))})
            dtypes = {{"user": tf.int64, "price": tf.float32,
                      "score": tf.float32}}
            feeds = {{k: tf.constant(v, dtype=dtypes.get(k, tf.string))
                     for k, v in raw.items()}}
            out = loaded.signatures["serving_default"](**feeds)
            print(json.dumps(out["probability"].numpy().tolist()))
            """,
            blocked=["tffm", "keras"],
        )
        got = np.array(json.loads(out.strip().splitlines()[-1]), np.float32)
        self.assertAllClose(got, expected, tol=testing.ORT)

    def test_onnx_runs_without_tensorflow_or_keras(self):
        from export.edge_cases import edge_case_batch

        raw = edge_case_batch(FEATURES, 20, seed=6)
        expected = np.asarray(
            self.encoder.compose(self.model)(to_tensors(FEATURES, raw))
        )
        payload = {k: v.tolist() for k, v in raw.items()}
        out = run_isolated(
            f"""
            import json, sys, numpy as np
            from serving import OnnxPredictor
            raw = json.loads({json.dumps(json.dumps(payload))})
            raw = {{k: np.array(v, dtype=object if k in ("city", "ad_id",
                   "tags", "history") else None) for k, v in raw.items()}}
            p = OnnxPredictor({self.result.onnx!r})
            out = p.predict(raw)
            assert p.version == 3
            loaded = [m for m in ("tensorflow", "keras", "export")
                      if sys.modules.get(m) is not None]
            assert not loaded, loaded
            print(json.dumps(out["probability"].tolist()))
            """,
            blocked=["tensorflow", "keras", "export", "jax", "torch"],
        )
        got = np.array(json.loads(out.strip().splitlines()[-1]), np.float32)
        self.assertAllClose(got, expected, tol=testing.ORT)

    def test_ids_in_core_onnx_matches_model(self):
        import onnxruntime as ort

        from export.edge_cases import edge_case_batch

        raw = edge_case_batch(FEATURES, 50, seed=7)
        ids = {
            k: np.asarray(v)
            for k, v in self.encoder(to_tensors(FEATURES, raw)).items()
        }
        feeds = {
            k: v.astype(np.int32) if v.dtype.kind == "i" else v
            for k, v in ids.items()
        }
        session = ort.InferenceSession(self.result.onnx_ids)
        prob, logit = session.run(["probability", "logit"], feeds)
        out = tffm.output_model(self.model)(ids)
        self.assertAllClose(prob, out["probability"], tol=testing.ORT)
        self.assertAllClose(logit, out["logit"], tol=testing.ORT)

    def test_warmup_records_are_valid_requests(self):
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(
            self.result.saved_model,
            "assets.extra",
            "tf_serving_warmup_requests",
        )
        records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
        self.assertNotEmpty(records)
        sig = tf.saved_model.load(self.result.saved_model).signatures[
            "serving_default"
        ]
        for record in records:
            log = prediction_log_pb2.PredictionLog.FromString(record)
            request = log.predict_log.request
            self.assertEqual(request.model_spec.name, "ctr")
            self.assertEqual(
                request.model_spec.signature_name, "serving_default"
            )
            self.assertEqual(set(request.inputs), {f.name for f in FEATURES})
            feeds = {
                k: tf.constant(tf.make_ndarray(v))
                for k, v in request.inputs.items()
            }
            out = sig(**feeds)
            self.assertEqual(out["probability"].shape[1], 1)
            self.assertTrue(np.isfinite(out["probability"].numpy()).all())

    def test_infinite_numbers_are_refused_by_every_artifact(self):
        import tensorflow as tf

        from export import SavedModelPredictor
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor
        from tffm.encoder import KerasPredictor

        predictors = [
            KerasPredictor(self.model),
            OnnxPredictor(self.result.onnx),
            SavedModelPredictor(self.result.saved_model),
        ]
        sig = tf.saved_model.load(self.result.saved_model).signatures[
            "serving_default"
        ]
        raw = edge_case_batch(FEATURES, 4, seed=8)
        for bad in (np.inf, -np.inf, 1e300):  # 1e300: beyond float32
            raw["price"] = np.array([1.0, bad, 2.0, 3.0])
            for predictor in predictors:
                with self.assertRaisesRegex(
                    ValueError, "Feature 'price': row 1 is infinite or beyond"
                ):
                    predictor.predict(raw)
            # TF Serving runs the bare signature: it refuses them too.
            with self.assertRaisesRegex(
                tf.errors.InvalidArgumentError, "Feature price: infinite"
            ):
                sig(
                    **unchecked_tensors(
                        dict(raw, price=raw["price"].astype("float32"))
                    )
                )
        # NaN is "missing", and the largest finite float32 gives a finite
        # probability.
        raw["price"] = np.array([np.nan, 3.4e38, -3.4e38, 0.0], "float32")
        for predictor in predictors:
            out = predictor.predict(raw)["probability"]
            self.assertTrue(np.isfinite(out).all())

    def test_bad_input_names_the_feature(self):
        import tensorflow as tf

        from export import SavedModelPredictor
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor
        from tffm.encoder import KerasPredictor

        raw = edge_case_batch(FEATURES, 4, seed=8)
        predictors = [
            KerasPredictor(self.model),
            OnnxPredictor(self.result.onnx),
            SavedModelPredictor(self.result.saved_model),
        ]
        sig = tf.saved_model.load(self.result.saved_model).signatures[
            "serving_default"
        ]
        composed = self.encoder.compose(self.model)

        missing = {k: v for k, v in raw.items() if k != "price"}
        wrong_dtype = dict(raw, city=np.array([1.0, 2.0, 3.0, 4.0]))
        wrong_rank = dict(raw, tags=raw["tags"][:, 0])
        ragged = dict(raw, tags=[["x"], ["x", "y"], [], ["z"]])
        for predictor in predictors:
            with self.assertRaisesRegex(
                ValueError, "Feature 'tags': lists must be padded"
            ):
                predictor.predict(ragged)
            with self.assertRaisesRegex(ValueError, "Missing.*'price'"):
                predictor.predict(missing)
            with self.assertRaisesRegex(ValueError, "'city' takes strings"):
                predictor.predict(wrong_dtype)
            with self.assertRaisesRegex(ValueError, "'tags' must have shape"):
                predictor.predict(wrong_rank)
        # The bare signature and Keras model reject them too (TensorFlow
        # names a missing argument; a wrong dtype or rank only by position).
        with self.assertRaisesRegex(TypeError, "price"):
            sig(**unchecked_tensors(missing))
        with self.assertRaisesRegex(Exception, "price"):
            composed(unchecked_tensors(missing))
        with self.assertRaises(tf.errors.InvalidArgumentError):
            sig(**unchecked_tensors(wrong_dtype))
        with self.assertRaises((tf.errors.InvalidArgumentError, ValueError)):
            sig(**unchecked_tensors(wrong_rank))


class ModelsConfigTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_each_model_gets_the_base_path_given(self):
        from export.saved_model import write_models_config

        path = write_models_config(
            str(self.tmp / "models.config"),
            {"a": "/srv/a", "b": 'C:\\models\\"b"'},
        )
        self.assertEqual(
            open(path).read(),
            "model_config_list {\n"
            "  config {\n"
            '    name: "a"\n'
            '    base_path: "/srv/a"\n'
            '    model_platform: "tensorflow"\n'
            "  }\n"
            "  config {\n"
            '    name: "b"\n'
            '    base_path: "C:\\\\models\\\\\\"b\\""\n'
            '    model_platform: "tensorflow"\n'
            "  }\n"
            "}\n",
        )


class ExportRefusalTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, trained, tmp_path):
        self.model, _ = trained
        self.tmp = tmp_path

    def test_refuses_to_publish_failing_artifacts(self):
        from export import ParityError
        from export import export_for_serving

        out = self.tmp / "refused"
        with self.assertRaisesRegex(ParityError, "FAIL"):
            # A negative tolerance fails every comparison.
            export_for_serving(
                self.model, str(out), model_name="ctr", tolerance=(-1.0, 0.0)
            )
        self.assertEqual(os.listdir(out), [])

    def test_unsupported_opset_is_refused_before_converting(self):
        from export import export_onnx

        for opset in (9, 10, 99, True):
            with self.assertRaisesRegex(
                ValueError, r"`opset` must be an integer from 11 .* to 1\d"
            ):
                export_onnx(self.model, str(self.tmp / "x.onnx"), opset=opset)
        self.assertFalse(os.path.exists(self.tmp / "x.onnx"))

    def test_cli_export_and_verify(self):
        from tffm.cli import main

        path = str(self.tmp / "ctr.keras")
        self.model.save(path)
        out = str(self.tmp / "cli")
        self.assertEqual(main(["export", "--model", path, "--output", out]), 0)
        sm = os.path.join(out, "saved_model", "ctr", "1")
        onnx_path = os.path.join(out, "onnx", "ctr-1.onnx")
        self.assertEqual(
            main(
                [
                    "verify",
                    "--model",
                    path,
                    "--saved-model",
                    sm,
                    "--onnx",
                    onnx_path,
                ]
            ),
            0,
        )
        # Another model's artifacts do not pass as this model's.
        other = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[16, 8])
        other_path = str(self.tmp / "other.keras")
        other.save(other_path)
        self.assertEqual(
            main(["verify", "--model", other_path, "--onnx", onnx_path]), 1
        )
        self.assertEqual(
            main(["verify", "--model", "nope.keras", "--onnx", onnx_path]), 2
        )


class QuantizedExportTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, tmp_path):
        self.tmp = tmp_path

    def test_int8_onnx_is_smaller_and_its_cost_is_measured(self):
        import keras

        from export.onnx import export_onnx
        from export.parity import accuracy_change
        from tffm.metrics import roc_auc

        data = tffm.synthetic.make_planted_ctr(4000, seed=4)
        train, valid = data.split(0.75)
        model = tffm.DeepFM(
            data.features, embedding_dim=4, hidden_units=[256, 128]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.005), loss="binary_crossentropy"
        )
        encoder = tffm.FeatureEncoder(data.features)
        model.fit(
            encoder(to_tensors(data.features, train.raw)),
            train.labels,
            epochs=2,
            batch_size=256,
            verbose=0,
        )
        full = export_onnx(model, str(self.tmp / "full.onnx"))
        small = export_onnx(model, str(self.tmp / "int8.onnx"), quantize=True)
        self.assertLess(os.path.getsize(small), 0.6 * os.path.getsize(full))
        change = accuracy_change(model, small, valid.raw, valid.labels)
        expected = np.asarray(
            encoder.compose(model)(to_tensors(data.features, valid.raw))
        )[:, 0]
        self.assertAllClose(
            change.keras_auc, roc_auc(valid.labels, expected), tol=(1e-12, 0)
        )
        # Quantization changes outputs (reported, not hidden) but slightly.
        self.assertGreater(change.max_abs_probability_change, 0.0)
        self.assertLess(abs(change.auc_delta), 0.01)
        self.assertIn("| AUC |", change.table())
        lossless = accuracy_change(model, full, valid.raw, valid.labels)
        self.assertLess(lossless.max_abs_probability_change, 1e-5)


class MixedPrecisionExportTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_bf16_model_exports_as_its_float32_twin(self):
        from export import export_for_serving
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor
        from tffm.encoder import KerasPredictor

        model = tffm.DeepFM(
            FEATURES, embedding_dim=4, hidden_units=[8], dtype="mixed_bfloat16"
        )
        result = export_for_serving(model, str(self.tmp / "x"), model_name="bf")
        # Parity passed (else it raised): the twin's artifacts are there and
        # match it within float32 on every batch.
        for path in (result.onnx, result.onnx_ids, result.models_config):
            self.assertTrue(os.path.isfile(path), path)
        self.assertTrue(
            os.path.isfile(os.path.join(result.saved_model, "saved_model.pb"))
        )
        probability = [
            r for r in result.report.rows if r.output == "probability"
        ]
        self.assertLen(probability, 3 * 2)  # 3 batches x 2 artifacts
        for row in probability:
            self.assertLessEqual(row.max_abs, 2e-5, result.report.table())
        # The artifacts compute in float32: within bf16 rounding of the
        # bf16 model (8 bits of mantissa: ~0.4%), not equal to it.
        raw = edge_case_batch(FEATURES, 64, seed=1)
        raw["price"] = np.clip(raw["price"], -50, 50)
        raw["score"] = np.clip(raw["score"], -50, 50)
        onnx_p = OnnxPredictor(result.onnx).predict(raw)["probability"]
        bf16_p = KerasPredictor(model).predict(raw)["probability"]
        self.assertAllClose(onnx_p, bf16_p, tol=(2e-2, 0))
