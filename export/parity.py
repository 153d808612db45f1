"""Parity: Keras vs SavedModel vs ONNX Runtime on the same raw batches."""

import dataclasses
import gc
import itertools
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from export.edge_cases import edge_case_batch
from export.onnx_data import weight_bytes
from export.precision import float32_model
from export.saved_model import SavedModelPredictor
from serving.onnx_predictor import OnnxPredictor
from tffm import constants
from tffm.encoder import KerasPredictor
from tffm.encoder import run_numpy
from tffm.train.evaluation import evaluate_predictions
from tffm.types import Tensor

# An artifact may differ from Keras by this many times float32's own error
# on a value, beyond `tolerance`: two float32 programs of one model, each
# off from exact arithmetic by about that much, can be that far apart.
# Measured (FMs whose clipped numeric terms, 1e2 to 1e4, cancel to ~20):
# ONNX Runtime needed at most 1.8 times the estimate below.
FLOAT32_ERROR_FACTOR = 4.0
# Float64 runs with every layer's output rounded at random, which estimate
# float32's error on each value (with 2, ONNX needed up to 5.7 times it).
ROUNDING_SAMPLES = 8
_UNIT_ROUNDOFF = 2.0**-24  # float32: a result is exact * (1 + d), |d| <= it
# Models with more float32 weights than this get no float64 reference: its
# copy holds twice their bytes, beside the model, while the SavedModel and
# ONNX exports' memory is still held (a 2.5 GiB DeepFM peaked past 16 GiB).
# They are checked by `(atol, rtol)` alone, as the report says.
FLOAT64_REFERENCE_MAX_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class ParityRow:
    """One artifact's one output on one batch, against Keras.

    `max_abs` / `max_rel`: largest `|artifact - keras|` (and over
    `|keras|`). Float32's error on the batch's values, from the float64
    reference `r` (NaN without one): `keras_error`, largest `|keras - r|`;
    `rounding_error`, largest `|r' - r|` of the runs `r'` with random
    float32 rounding.
    """

    batch: str
    artifact: str
    output: str
    max_abs: float
    max_rel: float
    keras_error: float
    rounding_error: float
    dtype: str
    shape: tuple[int, ...]
    ok: bool
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """All rows of a parity check; `ok` when every row passed.

    `reference`: `"float64"`, or why there was no float64 reference (then
    no value got the `error_factor` term).
    """

    rows: tuple[ParityRow, ...]
    tolerance: tuple[float, float]
    error_factor: float = FLOAT32_ERROR_FACTOR
    reference: str = "float64"

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        """A Markdown table, one line per (batch, artifact, output)."""
        atol, rtol = self.tolerance
        if self.reference == "float64":
            rule = [
                f"Parity vs Keras (pass: |a-b| <= {atol:g} + {rtol:g}*|r| + "
                f"{self.error_factor:g}*e per value)",
                "",
                "a: artifact; b: Keras; r: the model in float64; e: "
                "float32's error on the value, the larger of |b-r| (Keras "
                f"f32 err) and |r'-r| over {ROUNDING_SAMPLES} float64 runs r' "
                "with each layer's outputs rounded at random by float32's "
                "unit roundoff (rounding est.).",
            ]
        else:
            rule = [
                f"Parity vs Keras (pass: |a-b| <= {atol:g} + {rtol:g}*|b|; "
                f"no float64 reference: {self.reference})"
            ]
        lines = rule + [
            "",
            "| batch | artifact | output | max abs err | max rel err "
            "| Keras f32 err | rounding est. | dtype | shape | result |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for r in self.rows:
            result = "ok" if r.ok else f"FAIL {r.problem}".strip()
            lines.append(
                f"| {r.batch} | {r.artifact} | {r.output} | {r.max_abs:.3g} "
                f"| {r.max_rel:.3g} | {_format(r.keras_error)} "
                f"| {_format(r.rounding_error)} | {r.dtype} | {r.shape} "
                f"| {result} |"
            )
        return "\n".join(lines)


def verify_parity(
    model: Any,
    *,
    saved_model: str | None = None,
    onnx: str | None = None,
    batches: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    tolerance: tuple[float, float] = constants.PARITY_TOLERANCE,
    error_factor: float = FLOAT32_ERROR_FACTOR,
) -> ParityReport:
    """Runs Keras, the SavedModel signature and ONNX Runtime on raw batches.

    Each artifact runs through the predictor users serve it with: the
    SavedModel, loaded fresh, through `SavedModelPredictor`
    (`serving_default`); the ONNX file through `serving.OnnxPredictor`
    (onnxruntime, CPU). Every named output is compared with the Keras
    model's: dtype, shape and value. A value `a` passes against Keras' `b`
    when `|a - b| <= atol + rtol * |r| + error_factor * e` (NaN only where
    Keras has NaN), `r` being the value computed by the model in float64
    (every layer rebuilt with `dtype="float64"`, the output head included,
    and given the same weights) and `e` float32's error on it: the larger
    of Keras' own, `|b - r|`, and the largest change of `r` over
    `ROUNDING_SAMPLES` float64 runs with each layer's outputs multiplied by
    `1 + d`, `d` uniform within float32's unit roundoff (2^-24).

    Where a value is the small difference of large terms (a numeric value
    clipped to 10,000 standard deviations), float32 is off from exact
    arithmetic by more than `atol + rtol * |r|`, in Keras and in every
    artifact, each in its own direction; `e` allows that much. Elsewhere
    `e` is ~1e-7 and the check is `(atol, rtol)`'s, so an artifact that
    computes another function (a changed weight, a wrong hash bucket) still
    fails. A model with over `FLOAT64_REFERENCE_MAX_BYTES` (1 GiB) of
    weights has no float64 copy made (it would hold twice their memory):
    its values pass by `|a - b| <= atol + rtol * |b|`, and the report's
    `reference` says why.

    Args:
        model: the tffm model the artifacts were exported from.
        saved_model: str. SavedModel directory, or None to skip.
        onnx: str. Raw-input `.onnx` file, or None to skip.
        batches: dict `{label: raw batch}`. Defaults to edge-case batches of
            sizes 1, 64 and 10,000 (`export.edge_cases`).
        tolerance: `(atol, rtol)`. Defaults to `(1e-5, 1e-5)`.
        error_factor: float. Multiple of float32's error `e` allowed on
            each value. Defaults to `FLOAT32_ERROR_FACTOR` (4).

    Returns:
        A `ParityReport`.
    """
    model = float32_model(model)

    if batches is None:
        batches = {
            f"edge-{n}": edge_case_batch(model.features, n, seed=n)
            for n in constants.PARITY_BATCH_SIZES
        }
    keras_predictor = KerasPredictor(model)
    # Each batch encoded once: Keras (`KerasPredictor.predict`'s two steps)
    # and the float64 reference run on the same inputs.
    encoded = {
        label: keras_predictor.encode(raw) for label, raw in batches.items()
    }
    expected = {
        label: run_numpy(keras_predictor.model, ids)
        for label, ids in encoded.items()
    }
    exact, reference = _float64_outputs(keras_predictor.model, encoded)
    allowed = {
        label: {
            name: _allowance(
                want,
                None if exact is None else exact[label][name],
                tolerance,
                error_factor,
            )
            for name, want in outputs.items()
        }
        for label, outputs in expected.items()
    }
    del keras_predictor, encoded
    loaders: dict[str, Any] = {}
    if saved_model is not None:
        loaders["saved_model"] = lambda: SavedModelPredictor(saved_model)
    if onnx is not None:
        loaders["onnx"] = lambda: OnnxPredictor(onnx)
    rows = []
    # One artifact loaded at a time: a large model's weights are then in
    # memory twice at most (Keras and one artifact), not three times.
    for artifact, load in loaders.items():
        runner = load()
        for label, raw in batches.items():
            actual = runner.predict(raw)
            for name, want in expected[label].items():
                rows.append(
                    _compare(
                        label,
                        artifact,
                        name,
                        actual.get(name),
                        want,
                        *allowed[label][name],
                    )
                )
        del runner
    order = {label: i for i, label in enumerate(batches)}
    rows.sort(key=lambda r: order[r.batch])  # by batch, as before
    return ParityReport(tuple(rows), tolerance, error_factor, reference)


@dataclasses.dataclass(frozen=True)
class AccuracyChange:
    """Validation metrics of Keras vs a lossy artifact (e.g. int8 ONNX)."""

    keras_auc: float
    artifact_auc: float
    keras_logloss: float
    artifact_logloss: float
    max_abs_probability_change: float

    @property
    def auc_delta(self) -> float:
        return self.artifact_auc - self.keras_auc

    @property
    def logloss_delta(self) -> float:
        return self.artifact_logloss - self.keras_logloss

    def table(self) -> str:
        return "\n".join(
            [
                "| metric | Keras | artifact | delta |",
                "| --- | ---: | ---: | ---: |",
                f"| AUC | {self.keras_auc:.5f} | {self.artifact_auc:.5f} "
                f"| {self.auc_delta:+.5f} |",
                f"| logloss | {self.keras_logloss:.5f} "
                f"| {self.artifact_logloss:.5f} | {self.logloss_delta:+.5f} |",
                f"| max abs probability change | | | "
                f"{self.max_abs_probability_change:.3g} |",
            ]
        )


def accuracy_change(
    model: Any,
    onnx: str,
    raw: Mapping[str, np.ndarray],
    labels: np.ndarray,
) -> AccuracyChange:
    """Measures what a lossy ONNX (int8) costs on labelled validation data.

    Args:
        model: the Keras model (binary task).
        onnx: str. Raw-input ONNX file, e.g. written with `quantize=True`.
        raw: dict of raw validation features.
        labels: `(num_rows,)` 0/1 validation labels.

    Returns:
        An `AccuracyChange`.
    """
    head = constants.PROBABILITY
    expected = KerasPredictor(model).predict(raw)[head][:, 0]
    actual = OnnxPredictor(onnx).predict(raw)[head][:, 0]
    keras_metrics = evaluate_predictions(labels, expected, "binary")
    artifact_metrics = evaluate_predictions(labels, actual, "binary")
    return AccuracyChange(
        keras_auc=keras_metrics["auc"],
        artifact_auc=artifact_metrics["auc"],
        keras_logloss=keras_metrics["logloss"],
        artifact_logloss=artifact_metrics["logloss"],
        max_abs_probability_change=float(np.abs(actual - expected).max()),
    )


class _RandomRounding(keras.layers.Layer):
    """`x * (1 + d)`, `d` uniform in `+-2^-24`: float32 rounding, in float64.

    Args:
        seed: int. Seed of this layer's draws.
        **kwargs: Base `keras.layers.Layer` arguments.
    """

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(dtype="float64", **kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Tensor) -> Tensor:
        d = keras.random.uniform(
            keras.ops.shape(inputs),
            minval=-_UNIT_ROUNDOFF,
            maxval=_UNIT_ROUNDOFF,
            dtype="float64",
            seed=self.seed_generator,
        )  # same shape as inputs
        return inputs * (1.0 + d)


def _float64_outputs(
    model: Any, encoded: Mapping[str, Mapping[str, Tensor]]
) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] | None, str]:
    """Per batch and output: `(value in float64, float32 rounding spread)`.

    `model` is the Keras model with named outputs, `encoded` its inputs by
    batch. The spread is the largest `|r' - r|` over `ROUNDING_SAMPLES`
    runs `r'` with random rounding. Returns `(None, why)` without a float64
    model: one layer keeps float32, or the weights are over
    `FLOAT64_REFERENCE_MAX_BYTES`.
    """
    size = weight_bytes(model)
    limit = FLOAT64_REFERENCE_MAX_BYTES
    if size > limit:
        return None, (
            f"the model's {size / 2**30:.2f} GiB of weights are over "
            f"FLOAT64_REFERENCE_MAX_BYTES ({limit / 2**30:g} GiB), and a "
            "float64 copy would hold twice that"
        )
    models = _float64_models(model)
    if isinstance(models, str):
        return None, models
    exact, rounded = models
    outputs = {}
    for label, ids in encoded.items():
        values = run_numpy(exact, ids)
        spread = {name: np.zeros_like(v) for name, v in values.items()}
        for _ in range(ROUNDING_SAMPLES):
            for name, v in run_numpy(rounded, ids).items():
                spread[name] = np.fmax(spread[name], np.abs(v - values[name]))
        outputs[label] = {name: (values[name], spread[name]) for name in values}
    # The float64 copy holds twice the weights' memory; Keras layers hold
    # reference cycles, so it is collected before any artifact loads.
    del exact, rounded, models
    gc.collect()
    return outputs, "float64"


def _float64_models(named: Any) -> tuple[Any, Any] | str:
    """`(exact, rounded)` float64 copies of a model with named outputs.

    Every layer is rebuilt from its config with `dtype="float64"`: the
    output head too, which tffm keeps in float32 under any policy (so a
    model rebuilt from its own config in float64 would still add its logit
    parts in float32). The float32 weights are exact in float64. `rounded`
    shares `exact`'s layers and passes each layer's outputs through
    `_RandomRounding`. Returns why not when a layer keeps another dtype.
    """

    def to_float64(layer: Any) -> Any:
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        config = layer.get_config()
        config["dtype"] = "float64"
        return type(layer).from_config(config)

    exact = keras.models.clone_model(named, clone_function=to_float64)
    for layer in exact.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        layer.set_weights(named.get_layer(layer.name).get_weights())
        dtypes = {layer.compute_dtype} | {
            w.dtype for w in layer.weights if "float" in w.dtype
        }  # not a seed generator's integer state
        if dtypes != {"float64"}:
            return (
                f"layer {layer.name!r} keeps {sorted(dtypes)} when rebuilt "
                "with dtype float64"
            )
    seeds = itertools.count()

    def call_rounded(layer: Any, *args: Any, **kwargs: Any) -> Any:
        return keras.tree.map_structure(
            lambda t: (
                _RandomRounding(next(seeds))(t) if "float" in t.dtype else t
            ),
            layer(*args, **kwargs),
        )

    rounded = keras.models.clone_model(
        exact, clone_function=lambda layer: layer, call_function=call_rounded
    )
    return exact, rounded


def _allowance(
    expected: np.ndarray,
    exact: tuple[np.ndarray, np.ndarray] | None,
    tolerance: tuple[float, float],
    factor: float,
) -> tuple[np.ndarray, float, float]:
    """Allowed `|artifact - keras|` per value; Keras' and rounding's error.

    `atol + rtol * |r| + factor * max(|b - r|, spread)` for Keras' `b` and
    `exact = (r, spread)`; where those are not finite (NaN in, NaN out) or
    without a reference, `atol + rtol * |b|`. The errors are the largest
    `|b - r|` and spread, NaN without a reference.
    """
    atol, rtol = tolerance
    b = expected.astype(np.float64)
    if exact is None:
        nan = float("nan")
        return atol + rtol * np.abs(np.nan_to_num(b)), nan, nan
    r, spread = exact
    keras_error = np.abs(b - r)  # (B, 1)
    error = np.fmax(keras_error, spread)  # NaN only where both are
    finite = np.isfinite(error) & np.isfinite(r)
    scale = np.where(finite, np.abs(r), np.abs(np.nan_to_num(b)))
    allowed = atol + rtol * scale + factor * np.where(finite, error, 0.0)
    return (
        allowed,
        float(keras_error[np.isfinite(keras_error)].max(initial=0.0)),
        float(spread[np.isfinite(spread)].max(initial=0.0)),
    )


def _compare(
    batch: str,
    artifact: str,
    name: str,
    actual: Any,
    expected: np.ndarray,
    allowed: np.ndarray,
    keras_error: float,
    rounding_error: float,
) -> ParityRow:
    errors = (keras_error, rounding_error)
    if actual is None:
        return ParityRow(
            batch,
            artifact,
            name,
            np.inf,
            np.inf,
            *errors,
            "-",
            (),
            False,
            "missing output",
        )
    actual = np.asarray(actual)
    problems = []
    if actual.dtype != expected.dtype:
        problems.append(f"dtype {actual.dtype} != {expected.dtype}")
    if actual.shape != expected.shape:
        problems.append(f"shape {actual.shape} != {expected.shape}")
        return ParityRow(
            batch,
            artifact,
            name,
            np.inf,
            np.inf,
            *errors,
            str(actual.dtype),
            actual.shape,
            False,
            "; ".join(problems),
        )
    a, b = actual.astype(np.float64), expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    diff = np.where(both_nan | same_inf, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
    passed = bool(np.all(diff <= allowed))
    if not passed:
        problems.append("values")
    return ParityRow(
        batch,
        artifact,
        name,
        float(diff.max(initial=0.0)),
        float(np.nan_to_num(rel).max(initial=0.0)),
        *errors,
        str(actual.dtype),
        actual.shape,
        passed and not problems,
        "; ".join(problems),
    )


def _format(error: float) -> str:
    return "-" if np.isnan(error) else f"{error:.3g}"
