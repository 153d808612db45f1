"""Parity against a float64 reference: float32 cancellation in an edge row
passes, an artifact computing another function (a changed weight, a wrong
hash bucket) fails."""

import itertools
import os

import keras
import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import testing
from tffm.encoder import KerasPredictor
from tffm.encoder import to_tensors
from tffm.features import MISSING_ID
from tffm.features import NUMERIC_BOUND
from tffm.features import table_layout

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export and serving tests run under TensorFlow",
)
# The columns of tests/cli/user_day_test.py's CLI model, numeric ones plain
# so that 1e6 and above clip to +NUMERIC_BOUND in both.
FEATURES = [
    tffm.Categorical("c0", vocabulary=["a", "b", "c"]),
    tffm.Categorical("c1", hash_bins=32),
    tffm.Numeric("n0"),
    tffm.Numeric("n1"),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=4),
]
CANCEL_ROW = 4  # edge rows 4-6: every numeric value 1e6, 1e9 or 3e38
SCALE, SHIFT = 15.0, -0.4  # Platt scaling, as `tffm train` fits it
ORDINARY_ROW = 20  # past the edge cases


def numpy_fm(model, raw):
    """`{"logit", "probability"}` `(batch_size,)` of `model` in float64.

    Rendle's FM from the weights, pairs summed one by one, the way
    `FeatureEmbedding`'s docstring defines each field (lists pooled by their
    `combiner`, `x' = clip(x, +-NUMERIC_BOUND)` for these plain numeric
    features, 0 for NaN); only the ids come from tffm's encoder.
    """
    ids = testing.to_numpy(
        tffm.FeatureEncoder(FEATURES)(to_tensors(FEATURES, raw))
    )
    table, linear = model.get_layer("feature_embedding").get_weights()
    table, linear = table.astype(np.float64), linear.astype(np.float64)
    first = {n: offset for n, (offset, _) in table_layout(FEATURES).items()}
    v, w = [], []  # per field: (B, D), (B,)
    for f in FEATURES:
        row = first[f.table_name]
        if isinstance(f, tffm.Numeric):
            x = raw[f.name].astype(np.float64)
            x = np.where(np.isnan(x), 0.0, x)
            x = np.clip((x - f.mean) / f.std, -NUMERIC_BOUND, NUMERIC_BOUND)
            v.append(x[:, None] * table[row])
            w.append(x * linear[row])
        elif isinstance(f, tffm.MultiCategorical):
            keep = (ids[f.name] > MISSING_ID).astype(np.float64)  # (B, L)
            count = (  # (B,): what the pooled sum is divided by
                np.maximum(keep.sum(axis=1), 1.0)
                if f.combiner == "mean"
                else np.ones(len(keep))
            )
            rows = row + ids[f.name]
            v.append((table[rows] * keep[..., None]).sum(1) / count[:, None])
            w.append((linear[rows] * keep).sum(1) / count)
        else:
            v.append(table[row + ids[f.name]])
            w.append(linear[row + ids[f.name]])
    pairs = sum(
        np.sum(v[i] * v[j], axis=-1)
        for i, j in itertools.combinations(range(len(FEATURES)), 2)
    )  # (B,)
    (bias,) = model.get_layer("linear").get_weights()[0]
    scale, shift = model.get_layer("logit").get_weights()
    logit = scale * (bias + np.sum(w, axis=0) + pairs) + shift
    probability = np.exp(-np.logaddexp(0.0, -logit))  # sigmoid, no overflow
    return {"logit": logit, "probability": probability}


def cancelling_fm():
    """An FM whose edge rows 4-6 add terms of 1e2 to 1e4 that cancel.

    Numeric vectors and linear weights of a size training gives them
    (`x' = 1e4` makes their terms thousands), the calibration of the CLI
    model that failed, and n1's linear weight set so that row 4's logit is
    `15 * 1.4 - 0.4 = 20.6`, as that model's 21.3 was (terms of +-190).
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = tffm.FM(FEATURES, embedding_dim=4)
    embedding = model.get_layer("feature_embedding")
    table = rng.normal(0.0, 0.05, embedding.embeddings.shape)
    linear = rng.normal(0.0, 0.05, embedding.linear_weights.shape)
    layout = table_layout(FEATURES)
    n0, n1 = layout["n0"][0], layout["n1"][0]
    table[[n0, n1]] = rng.normal(0.0, 3e-3, (2, 4))
    linear[[n0, n1]] = rng.normal(0.0, 3e-2, 2)
    embedding.set_weights([table.astype("float32"), linear.astype("float32")])
    model.get_layer("logit").set_weights([np.float32(SCALE), np.float32(SHIFT)])
    raw = _edge(64)
    logit = numpy_fm(model, raw)["logit"][CANCEL_ROW]
    raw_logit = (logit - SHIFT) / SCALE
    linear[n1] += (1.4 - raw_logit) / NUMERIC_BOUND  # x' = 1e4 on that row
    embedding.set_weights([table.astype("float32"), linear.astype("float32")])
    return model


@pytest.fixture(scope="module")
def cancelling(tmp_path_factory):
    """The cancelling FM, exported and verified by `export_for_serving`."""
    from export import export_for_serving

    model = cancelling_fm()
    out = tmp_path_factory.mktemp("cancel")
    return model, export_for_serving(model, str(out), model_name="fm")


class Float64ReferenceTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, cancelling):
        self.model, self.result = cancelling

    def test_reference_is_the_model_in_float64(self):
        from export.parity import _float64_outputs

        raw = _edge(64)
        predictor = KerasPredictor(self.model)
        outputs, reference = _float64_outputs(
            predictor.model, {"b": predictor.encode(raw)}
        )
        self.assertEqual(reference, "float64")
        expected = numpy_fm(self.model, raw)
        keras32 = KerasPredictor(self.model).predict(raw)
        for name in ("logit", "probability"):
            value, spread = outputs["b"][name]
            self.assertEqual(value.dtype, np.float64)
            # Terms of 1e4 in float64: ~1e-12 apart, where float32 is 1e-4.
            self.assertAllClose(value[:, 0], expected[name], tol=(1e-10, 1e-10))
            self.assertTrue(np.all(spread >= 0.0))
        logit, spread = outputs["b"]["logit"]
        # 20.6 but for n1's weight rounded to float32: 15 * 1e4 * its ulp.
        self.assertAllClose(logit[CANCEL_ROW, 0], 20.6, tol=(2e-3, 0))
        # The row the old rule could not pass: Keras float32 itself is off
        # from exact arithmetic by more than 1e-5 + 1e-5 * |r|, and the
        # simulated rounding sees errors of that size too.
        base = 1e-5 + 1e-5 * abs(logit[CANCEL_ROW, 0])
        keras_error = abs(
            keras32["logit"][CANCEL_ROW, 0] - logit[CANCEL_ROW, 0]
        )
        self.assertGreater(keras_error, base)
        self.assertGreater(spread[CANCEL_ROW, 0], base)
        # An ordinary row: both ~1e-7, far under the tolerance.
        self.assertLess(spread[ORDINARY_ROW, 0], 1e-6)

    def test_float32_cancellation_passes(self):
        from export import verify_parity

        # The fixture's export verified this report (it raises otherwise).
        report = self.result.report
        table = report.table()
        self.assertIn("| Keras f32 err | rounding est. |", table)
        self.assertIn("+ 4*e per value", table)
        for row in report.rows:
            if row.output == "logit" and row.batch != "edge-1":
                # The cancelling rows' float32 error, ~1e-3 (~1e-7 elsewhere).
                self.assertGreater(row.keras_error, 1e-4, table)
                self.assertGreater(row.rounding_error, 1e-4, table)
        # The reproduction: held to 1e-5 + 1e-5 * |r| alone (factor 0),
        # ONNX Runtime's float32 fails on those rows, as `tffm export` did.
        old_rule = verify_parity(
            self.model,
            onnx=self.result.onnx,
            batches={"edge-10000": _edge(10_000)},
            error_factor=0.0,
        )
        self.assertFalse(old_rule.ok, old_rule.table())

    def test_a_model_over_the_memory_limit_gets_the_plain_rule(self):
        from unittest import mock

        from export import parity

        # A 1-byte limit: this model is over it, so no float64 copy is made
        # and each value is held to 1e-5 + 1e-5 * |b| (edge-1 has no
        # cancelling row, so ONNX Runtime passes that).
        with mock.patch.object(parity, "FLOAT64_REFERENCE_MAX_BYTES", 1):
            report = parity.verify_parity(
                self.model,
                onnx=self.result.onnx,
                batches={"edge-1": _edge(1)},
            )
        self.assertIn("over FLOAT64_REFERENCE_MAX_BYTES", report.reference)
        self.assertIn("no float64 reference", report.table())
        self.assertTrue(report.rows)
        self.assertTrue(report.ok, report.table())
        for row in report.rows:
            self.assertTrue(np.isnan(row.rounding_error), report.table())

    def test_reported_logit_passes_and_a_wrong_one_fails(self):
        from export.parity import _allowance

        # The CLI model's edge-64 logit: Keras, ONNX Runtime, float64.
        keras32 = np.float32([[21.31757]])
        onnx = np.float32([[21.31734]])
        exact = (np.array([[21.3173526]]), np.zeros((1, 1)))
        diff = abs(float(onnx[0, 0]) - float(keras32[0, 0]))  # 2.3e-4
        old, _, _ = _allowance(keras32, None, (1e-5, 1e-5), 4.0)
        self.assertAllClose(
            old, 1e-5 + 1e-5 * float(keras32[0, 0]), tol=(1e-12, 0)
        )
        self.assertGreater(diff, old[0, 0])  # the false alarm
        new, keras_error, _ = _allowance(keras32, exact, (1e-5, 1e-5), 4.0)
        self.assertAllClose(keras_error, 2.17e-4, tol=(1e-6, 0))
        self.assertAllClose(
            new, 1e-5 + 1e-5 * 21.3173526 + 4 * keras_error, tol=(1e-9, 0)
        )  # ~1.1e-3
        self.assertLess(diff, new[0, 0])
        self.assertGreater(2e-3, new[0, 0])  # 2e-3 off still fails


class WrongArtifactTest(testing.TestCase):
    """Artifacts exported from a copy of the model with one change: what an
    exporter that got a weight or the hashing wrong would publish."""

    @pytest.fixture(autouse=True)
    def _setup(self, cancelling, tmp_path):
        self.model, _ = cancelling
        self.tmp = str(tmp_path)
        ids = testing.to_numpy(
            tffm.FeatureEncoder(FEATURES)(to_tensors(FEATURES, _edge(64)))
        )
        layout = table_layout(FEATURES)
        # Fused-table rows: c0 = "a" (edge-64's row 0); row 20's c1 bucket
        # and a neighbour (c1's ids: 0 missing, then its 32 buckets).
        self.row_a = layout["c0"][0] + ids["c0"][0]
        bucket = ids["c1"][ORDINARY_ROW]
        other = bucket + 1 if bucket < layout["c1"][1] - 1 else bucket - 1
        self.buckets = [layout["c1"][0] + bucket, layout["c1"][0] + other]

    @parameterized.named_parameters(
        ("linear_weight", 1, None),  # w of c0 = "a"
        ("factor_element", 0, 2),  # v[2] of c0 = "a"
    )
    def test_one_weight_off_by_1e_3_fails(self, which, column):
        def change(weights):
            if column is None:
                weights[which][self.row_a] += 1e-3
            else:
                weights[which][self.row_a, column] += 1e-3

        self.assertFailsBoth(change)

    def test_wrong_hash_bucket_fails(self):
        def swap(weights):
            for w in weights:  # both variables: the buckets' whole rows
                w[self.buckets] = w[self.buckets[::-1]]

        self.assertFailsBoth(swap)

    def assertFailsBoth(self, change):
        from export import export_onnx
        from export import export_saved_model
        from export import verify_parity

        wrong = tffm.FM.from_config(self.model.get_config())
        wrong.set_weights(self.model.get_weights())
        embedding = wrong.get_layer("feature_embedding")
        weights = embedding.get_weights()
        change(weights)
        embedding.set_weights(weights)
        report = verify_parity(
            self.model,
            saved_model=export_saved_model(
                wrong, os.path.join(self.tmp, "sm"), model_name="fm"
            ),
            onnx=export_onnx(wrong, os.path.join(self.tmp, "fm.onnx")),
        )
        failed = [r for r in report.rows if not r.ok]
        self.assertEqual(
            {r.artifact for r in failed},
            {"saved_model", "onnx"},
            report.table(),
        )
        self.assertEqual({r.problem for r in failed}, {"values"})


class _Float32Only(keras.layers.Layer):
    """Computes in float32 whatever its config says."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        return inputs * 2.0


class NoReferenceTest(testing.TestCase):
    def test_a_layer_that_keeps_float32_leaves_the_plain_rule(self):
        from export.parity import ParityReport
        from export.parity import _float64_models

        x = keras.Input((3,))
        model = keras.Model(x, _Float32Only(name="pinned")(x))
        why = _float64_models(model)
        self.assertEqual(
            why,
            "layer 'pinned' keeps ['float32'] when rebuilt with dtype float64",
        )
        table = ParityReport((), (1e-5, 1e-5), reference=why).table()
        self.assertIn("|a-b| <= 1e-05 + 1e-05*|b|; no float64 reference", table)


def _edge(n):
    from export.edge_cases import edge_case_batch

    return edge_case_batch(FEATURES, n, seed=n)
