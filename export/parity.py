"""Parity: Keras vs SavedModel vs ONNX Runtime on the same raw batches."""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.edge_cases import edge_case_batch
from tffm import constants


@dataclasses.dataclass(frozen=True)
class ParityRow:
    """One artifact's one output on one batch, against Keras."""

    batch: str
    artifact: str
    output: str
    max_abs: float
    max_rel: float
    dtype: str
    shape: tuple[int, ...]
    ok: bool
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """All rows of a parity check; `ok` when every row passed."""

    rows: tuple[ParityRow, ...]
    tolerance: tuple[float, float]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        """A Markdown table, one line per (batch, artifact, output)."""
        atol, rtol = self.tolerance
        lines = [
            f"Parity vs Keras (pass: |a-b| <= {atol:g} + {rtol:g}*|b|)",
            "",
            "| batch | artifact | output | max abs err | max rel err "
            "| dtype | shape | result |",
            "| --- | --- | --- | ---: | ---: | --- | --- | --- |",
        ]
        for r in self.rows:
            result = "ok" if r.ok else f"FAIL {r.problem}".strip()
            lines.append(
                f"| {r.batch} | {r.artifact} | {r.output} | {r.max_abs:.3g} "
                f"| {r.max_rel:.3g} | {r.dtype} | {r.shape} | {result} |"
            )
        return "\n".join(lines)


def verify_parity(
    model: Any,
    *,
    saved_model: str | None = None,
    onnx: str | None = None,
    batches: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    tolerance: tuple[float, float] = constants.PARITY_TOLERANCE,
) -> ParityReport:
    """Runs Keras, the SavedModel signature and ONNX Runtime on raw batches.

    Each artifact runs through the predictor users serve it with: the
    SavedModel, loaded fresh, through `SavedModelPredictor`
    (`serving_default`); the ONNX file through `serving.OnnxPredictor`
    (onnxruntime, CPU). Every named output is compared with the
    Keras model's: value (elementwise `|a - b| <= atol + rtol * |b|`, NaN
    only where Keras has NaN), dtype and shape.

    Args:
        model: the tffm model the artifacts were exported from.
        saved_model: str. SavedModel directory, or None to skip.
        onnx: str. Raw-input `.onnx` file, or None to skip.
        batches: dict `{label: raw batch}`. Defaults to edge-case batches of
            sizes 1, 64 and 10,000 (`export.edge_cases`).
        tolerance: `(atol, rtol)`. Defaults to `(1e-5, 1e-5)`.

    Returns:
        A `ParityReport`.
    """
    from export.precision import float32_model

    model = float32_model(model)
    from export.saved_model import SavedModelPredictor
    from serving.onnx_predictor import OnnxPredictor
    from tffm.encoder import KerasPredictor

    if batches is None:
        batches = {
            f"edge-{n}": edge_case_batch(model.features, n, seed=n)
            for n in constants.PARITY_BATCH_SIZES
        }
    reference = KerasPredictor(model)
    expected = {label: reference.predict(raw) for label, raw in batches.items()}
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
                        label, artifact, name, actual.get(name), want, tolerance
                    )
                )
        del runner
    order = {label: i for i, label in enumerate(batches)}
    rows.sort(key=lambda r: order[r.batch])  # by batch, as before
    return ParityReport(tuple(rows), tolerance)


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
    from serving.onnx_predictor import OnnxPredictor
    from tffm.encoder import KerasPredictor
    from tffm.evaluation import evaluate_predictions

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


def _compare(
    batch: str,
    artifact: str,
    name: str,
    actual: Any,
    expected: np.ndarray,
    tolerance: tuple[float, float],
) -> ParityRow:
    if actual is None:
        return ParityRow(
            batch,
            artifact,
            name,
            np.inf,
            np.inf,
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
    atol, rtol = tolerance
    passed = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(b))))
    if not passed:
        problems.append("values")
    return ParityRow(
        batch,
        artifact,
        name,
        float(diff.max(initial=0.0)),
        float(np.nan_to_num(rel).max(initial=0.0)),
        str(actual.dtype),
        actual.shape,
        passed and not problems,
        "; ".join(problems),
    )
