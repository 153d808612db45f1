import os

import keras
import numpy as np
import pytest

from tffm import constants
from tffm import testing

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export needs the TensorFlow backend",
)


def reference_int8(table):
    """Row-wise symmetric int8, one element at a time in Python floats:
    `(q, scales, dequantized)`."""
    q = np.zeros(table.shape, np.int8)
    scales = np.zeros(len(table), np.float32)
    dequantized = np.zeros(table.shape, np.float32)
    for r, row in enumerate(table.tolist()):
        peak = max(abs(x) for x in row)
        scale = float(np.float32(peak / 127.0))
        scales[r] = scale
        for d, x in enumerate(row):
            level = 0 if scale == 0 else round(x / scale)  # half to even
            level = max(-127, min(127, level))
            q[r, d] = level
            dequantized[r, d] = np.float32(level) * np.float32(scale)
    return q, scales, dequantized


def reference_twin(model):
    """`model` with its embeddings replaced by `reference_int8`'s
    dequantized table and its linear weights rounded to float16."""
    twin = type(model).from_config(model.get_config())
    twin.set_weights(model.get_weights())
    layer = twin.get_layer("feature_embedding")
    table = np.asarray(layer.embeddings.numpy())
    layer.embeddings.assign(reference_int8(table)[2])
    linear = np.asarray(layer.linear_weights.numpy())
    layer.linear_weights.assign(linear.astype(np.float16).astype(np.float32))
    return twin


def small_batch(model):
    from export.edge_cases import edge_case_batch

    return {"edge-64": edge_case_batch(model.features, 64, seed=64)}


class StoreTableTest(testing.TestCase):
    def test_int8_matches_the_elementwise_reference(self):
        from export.tables import store_table

        rng = np.random.default_rng(0)
        table = rng.normal(0, 0.05, (50, 7)).astype(np.float32)
        table[3] = 0.0  # a zero row: scale 0, zeros back
        table[4] = [3.0e38, 1e-3, -2.0, 0.0, 5.0, -1e30, 7.0]  # one huge
        table[5] = [-5.0, 1.0, 2.0, 0.0, 0.0, 0.0, 2.5]  # negative peak
        table[6] = 1e-40  # subnormal float32 values
        stored = store_table(table, "int8", name="t")
        q, scales, dequantized = reference_int8(table)
        self.assertEqual(stored.values.dtype, np.int8)
        self.assertEqual(stored.scales.dtype, np.float32)
        self.assertAllEqual(stored.values, q)
        self.assertAllEqual(stored.scales, scales)
        self.assertAllEqual(stored.dequantize(), dequantized)
        self.assertAllEqual(stored.values[3], np.zeros(7))
        self.assertEqual(stored.scales[3], 0.0)
        # The huge value keeps its level; the others round to 0 beside it.
        self.assertEqual(stored.values[4, 0], 127)
        self.assertAllEqual(stored.values[4, 1:5], [0, 0, 0, 0])
        self.assertEqual(stored.values[5, 0], -127)
        # Each value is within half a step of the original.
        error = np.abs(dequantized.astype(np.float64) - table)
        half_step = scales.astype(np.float64)[:, None] / 2
        self.assertTrue(np.all(error <= half_step * (1 + 1e-6) + 1e-45))
        self.assertEqual(stored.nbytes, 50 * 7 + 50 * 4)
        # Quantized in blocks of rows (memory), the same values.
        from export import tables

        original = tables._BLOCK_ROWS
        try:
            tables._BLOCK_ROWS = 16  # 50 rows: 4 blocks, the last partial
            blocked = store_table(table, "int8", name="t")
        finally:
            tables._BLOCK_ROWS = original
        self.assertAllEqual(blocked.values, q)
        self.assertAllEqual(blocked.scales, scales)
        # Fixed rows (folded into the graph) read as the whole table does.
        ids = np.array([[4, 3], [0, 49]])
        self.assertAllEqual(stored.rows(ids), dequantized[ids])
        linear = store_table(table[:, 1], "int8", name="w")
        self.assertAllEqual(linear.rows(ids[0]), linear.dequantize()[ids[0]])

    def test_float16_and_the_linear_weights(self):
        from export.tables import store_table

        rng = np.random.default_rng(1)
        table = rng.normal(0, 1, (20, 3)).astype(np.float32)
        stored = store_table(table, "float16", name="t")
        self.assertIsNone(stored.scales)
        self.assertEqual(stored.values.dtype, np.float16)
        want = np.array(
            [[float(np.float16(x)) for x in row] for row in table.tolist()],
            np.float32,
        )
        self.assertAllEqual(stored.dequantize(), want)
        # One number per row: float16 under "int8" too, no scales.
        linear = store_table(table[:, 0], "int8", name="w")
        self.assertIsNone(linear.scales)
        self.assertAllEqual(linear.dequantize(), want[:, 0])
        full = store_table(table, "float32", name="t")
        self.assertAllEqual(full.dequantize(), table)

    def test_invalid_tables_and_precisions(self):
        from export.tables import store_table

        table = np.ones((4, 2), np.float32)
        table[2, 1] = np.nan
        with self.assertRaisesRegex(ValueError, "'emb'.*row 2"):
            store_table(table, "int8", name="emb")
        big = np.ones((4, 2), np.float32)
        big[1, 0] = 1e5
        with self.assertRaisesRegex(ValueError, "'emb'.*float16.*row 1"):
            store_table(big, "float16", name="emb")
        self.assertEqual(store_table(big, "int8", name="emb").values[1, 0], 127)
        with self.assertRaisesRegex(ValueError, "table_precision.*int4"):
            store_table(big, "int4", name="emb")


@pytest.fixture(scope="module")
def int8_onnx(trained, tmp_path_factory):
    """The trained model's raw-input ONNX with an int8 table."""
    from export import export_onnx

    path = str(tmp_path_factory.mktemp("int8") / "int8.onnx")
    return export_onnx(trained[0], path, table_precision="int8")


@pytest.mark.usefixtures("trained", "tmp_path_cls")
class QuantizedOnnxTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, trained, int8_onnx):
        self.model, _ = trained
        self.int8_onnx = int8_onnx

    def test_int8_graph_reads_the_reference_table(self):
        import onnx
        from onnx import numpy_helper

        from export import verify_parity

        path = self.int8_onnx
        proto = onnx.load(path)
        # Standard domains only, every node a registered op of its domain.
        self.assertLessEqual(
            {o.domain for o in proto.opset_import}, {"", "ai.onnx.ml"}
        )
        for node in proto.graph.node:
            self.assertTrue(
                onnx.defs.has(node.op_type, node.domain), node.op_type
            )
        metadata = {p.key: p.value for p in proto.metadata_props}
        self.assertEqual(metadata[constants.ONNX_PRECISION], "int8-tables")
        # The stored table is the reference's int8, its scales beside it.
        table = np.asarray(
            self.model.get_layer("feature_embedding").embeddings.numpy()
        )
        q, scales, _ = reference_int8(table)
        inits = {
            i.name: numpy_helper.to_array(i) for i in proto.graph.initializer
        }
        int8 = [n for n, v in inits.items() if v.dtype == np.int8]
        self.assertLen(int8, 1)
        self.assertAllEqual(inits[int8[0]], q)
        self.assertAllEqual(inits[int8[0] + "__scale"], scales[:, None])
        self.assertFalse(
            any(
                v.shape == table.shape
                for v in inits.values()
                if v.dtype == np.float32
            )
        )
        # The artifact equals the model with the reference tables, at the
        # usual tolerance, and differs from the trained model.
        report = verify_parity(reference_twin(self.model), onnx=path)
        self.assertTrue(report.ok, report.table())
        trained = verify_parity(
            self.model, onnx=path, batches=small_batch(self.model)
        )
        self.assertFalse(trained.ok)

    def test_one_perturbed_scale_fails_parity(self):
        import onnx
        from onnx import numpy_helper

        from export import verify_parity
        from tffm.features import OOV_ID

        path = self.int8_onnx
        proto = onnx.load(path)
        layer = self.model.get_layer("feature_embedding")
        # The row of an unknown city: every edge batch has one.
        row = layer._plan["city"][0] + OOV_ID
        for i, init in enumerate(proto.graph.initializer):
            if init.name.endswith("__scale"):
                scales = numpy_helper.to_array(init).copy()
                scales[row] *= 1.01
                proto.graph.initializer[i].CopyFrom(
                    numpy_helper.from_array(scales, init.name)
                )
        broken = os.path.join(self.tmp_path, "broken.onnx")
        onnx.save(proto, broken)
        twin = reference_twin(self.model)
        batches = small_batch(self.model)
        self.assertTrue(verify_parity(twin, onnx=path, batches=batches).ok)
        report = verify_parity(twin, onnx=broken, batches=batches)
        self.assertFalse(report.ok, report.table())

    @pytest.mark.slow
    def test_int8_with_external_data(self):
        import onnx

        from export import export_onnx
        from export import verify_parity
        from export.onnx_data import external_tensors

        path = os.path.join(self.tmp_path, "int8-ext.onnx")
        export_onnx(
            self.model, path, table_precision="int8", external_data=True
        )
        proto = onnx.load(path, load_external_data=False)
        types = [t.data_type for t in external_tensors(proto)]
        self.assertIn(onnx.TensorProto.INT8, types)  # the table
        self.assertIn(onnx.TensorProto.FLOAT16, types)  # the linear weights
        report = verify_parity(reference_twin(self.model), onnx=path)
        self.assertTrue(report.ok, report.table())

    def test_float16_round_trip(self):
        from export import export_onnx
        from export import verify_parity

        # float16 inline, against a float16-rounded twin built here.
        path = os.path.join(self.tmp_path, "float16.onnx")
        export_onnx(self.model, path, table_precision="float16")
        twin = type(self.model).from_config(self.model.get_config())
        twin.set_weights(self.model.get_weights())
        layer = twin.get_layer("feature_embedding")
        for variable in (layer.embeddings, layer.linear_weights):
            variable.assign(
                np.asarray(variable.numpy()).astype(np.float16).astype("f4")
            )
        report = verify_parity(twin, onnx=path)
        self.assertTrue(report.ok, report.table())


@pytest.mark.usefixtures("trained", "tmp_path_cls")
class QuantizedBundleTest(testing.TestCase):
    @pytest.mark.slow
    def test_bundle_reports_the_cost(self):
        from export import export_for_serving
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor
        from tffm.encoder import KerasPredictor

        model, _ = self.trained_model()
        raw = edge_case_batch(model.features, 2000, seed=7)
        raw["score"] = np.clip(raw["score"], -5, 5)
        labels = np.random.default_rng(0).integers(0, 2, 2000)
        result = export_for_serving(
            model,
            str(self.tmp_path),
            model_name="ctr",
            table_precision="int8",
            validation=(raw, labels),
        )
        cost = result.cost
        self.assertLess(cost.artifact.file_bytes, cost.baseline.file_bytes)
        self.assertGreater(cost.baseline.load_rss, 0)
        self.assertGreater(cost.artifact.batch1024_per_s, 0)
        # The change is measured against the trained model, independently.
        want = KerasPredictor(model).predict(raw)[constants.PROBABILITY]
        got = OnnxPredictor(result.onnx).predict(raw)[constants.PROBABILITY]
        change = np.abs(got.astype(np.float64) - want).max()
        self.assertGreater(change, 0.0)
        self.assertAllClose(cost.max_output_change, change, tol=(1e-12, 0))
        self.assertIsNotNone(cost.accuracy)
        parity_md = os.path.join(
            os.path.dirname(result.onnx), "ctr-1.parity.md"
        )
        text = open(parity_md).read()
        self.assertIn(result.report.table(), text)
        self.assertIn("| ONNX bytes (with data file) |", text)
        self.assertIn("| AUC |", text)
        # The SavedModel and the ONNX compute the one exported function.
        saved = result.report.rows
        self.assertTrue(all(r.ok for r in saved))
        self.assertEqual({r.artifact for r in saved}, {"saved_model", "onnx"})

    @pytest.fixture(autouse=True)
    def _setup(self, trained):
        self._trained = trained

    def trained_model(self):
        return self._trained
