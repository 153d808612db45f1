"""What a lower table precision costs: size, memory, speed and accuracy.

Parity checks an artifact against the model as exported (its dequantized
tables); this report sets the exported model beside the trained one: the
ONNX file's bytes (with its data file), the memory onnxruntime holds once
it has loaded it, batch-1 latency and batch-1,024 throughput through
`serving.OnnxPredictor`, each against the float32 export in the same run,
and what the outputs lose: the largest change of the model's head output,
and AUC / logloss on labelled validation data when given.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

import serving
from export.onnx_data import data_file
from export.parity import AccuracyChange
from serving.onnx_predictor import OnnxPredictor
from tffm import constants
from tffm.encoder import KerasPredictor
from tffm.train.evaluation import evaluate_predictions

THROUGHPUT_BATCH_SIZE = 1024
LATENCY_REPEATS = 200  # batch-1 calls per artifact
THROUGHPUT_REPEATS = 10  # batch-1,024 calls per artifact
# Loads the predictor in a fresh process and prints its RSS growth (bytes).
_RSS_SCRIPT = """
import json, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * {page}
import numpy, onnxruntime
from serving.onnx_predictor import OnnxPredictor
before = rss()
predictor = OnnxPredictor(sys.argv[1], threads=1)
print(json.dumps(rss() - before))
"""


@dataclasses.dataclass(frozen=True)
class ArtifactCost:
    """One ONNX file's size, load memory and speed.

    `load_rss` is NaN where `/proc` is not there to read it.
    """

    label: str
    file_bytes: int
    load_rss: float
    batch1_p50_us: float
    batch1024_per_s: float


@dataclasses.dataclass(frozen=True)
class PrecisionCost:
    """The float32 export and the lower-precision one, side by side."""

    table_precision: str
    baseline: ArtifactCost
    artifact: ArtifactCost
    max_output_change: float
    output: str
    accuracy: AccuracyChange | None

    def table(self) -> str:
        """A Markdown section for `parity.md`."""
        b, a = self.baseline, self.artifact

        def ratio(x: float, y: float) -> str:
            return f"{x / y:.3f}x" if y and np.isfinite(x / y) else "-"

        lines = [
            f"Cost of table_precision={self.table_precision} against the "
            "float32 export (same run; through serving.OnnxPredictor, one "
            "thread, CPU)",
            "",
            f"| | float32 | {self.table_precision} | ratio |",
            "| --- | ---: | ---: | ---: |",
            f"| ONNX bytes (with data file) | {b.file_bytes:,} "
            f"| {a.file_bytes:,} | {ratio(a.file_bytes, b.file_bytes)} |",
            f"| load RSS (bytes) | {_int(b.load_rss)} | {_int(a.load_rss)} "
            f"| {ratio(a.load_rss, b.load_rss)} |",
            f"| batch-1 p50 (us) | {b.batch1_p50_us:.1f} "
            f"| {a.batch1_p50_us:.1f} "
            f"| {ratio(a.batch1_p50_us, b.batch1_p50_us)} |",
            f"| batch-1,024 samples/s | {b.batch1024_per_s:,.0f} "
            f"| {a.batch1024_per_s:,.0f} "
            f"| {ratio(a.batch1024_per_s, b.batch1024_per_s)} |",
            "",
            f"Max |{self.output} change| against the trained model: "
            f"{self.max_output_change:.3g}",
        ]
        if self.accuracy is not None:
            lines += ["", "On the validation data:", "", self.accuracy.table()]
        return "\n".join(lines)


def onnx_bytes(path: str) -> int:
    """Bytes of an ONNX file and of its data file, if it has one."""
    data = os.path.join(os.path.dirname(path) or ".", data_file(path))
    return os.path.getsize(path) + (
        os.path.getsize(data) if os.path.exists(data) else 0
    )


def load_rss(path: str) -> float:
    """Bytes a fresh process's RSS grows by to load `path` (NaN: no /proc)."""
    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    # The subprocess imports `serving` from where this process did.
    root = os.path.dirname(os.path.dirname(os.path.abspath(serving.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    script = _RSS_SCRIPT.format(page=os.sysconf("SC_PAGE_SIZE"))
    done = subprocess.run(
        [sys.executable, "-c", script, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"Loading {path} in a fresh process failed:\n{done.stderr[-2000:]}"
        )
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_precision_cost(
    model: Any,
    baseline: str,
    onnx: str,
    *,
    table_precision: str,
    batch: Mapping[str, np.ndarray],
    validation: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None,
) -> PrecisionCost:
    """Measures `onnx` (lower precision) against `baseline` (float32).

    Args:
        model: the trained Keras model (float32 tables).
        baseline: str. Its float32 raw-input ONNX file.
        onnx: str. The raw-input ONNX file at `table_precision`.
        table_precision: str. Its precision, for the report.
        batch: raw batch of at least 1,024 rows: the timings' input, and
            where the output change is measured without validation data.
        validation: `(raw, labels)`: labelled rows (binary task: AUC and
            logloss; any task: the output change is measured there).

    Returns:
        A `PrecisionCost`.
    """
    head = constants.HEAD[model.task]
    rows = len(next(iter(batch.values())))
    if rows < THROUGHPUT_BATCH_SIZE:
        raise ValueError(
            f"`batch` must have at least {THROUGHPUT_BATCH_SIZE} rows. "
            f"Received: {rows}"
        )
    predictors = {"float32": OnnxPredictor(baseline, threads=1)}
    predictors[table_precision] = OnnxPredictor(onnx, threads=1)
    speed = _speeds(predictors, batch)
    raw = batch if validation is None else validation[0]
    expected = KerasPredictor(model).predict(raw)[head][:, 0]
    actual = predictors[table_precision].predict(raw)[head][:, 0]
    change = np.abs(actual.astype(np.float64) - expected)
    accuracy = None
    if validation is not None and model.task == "binary":
        labels = np.asarray(validation[1])
        trained = evaluate_predictions(labels, expected, "binary")
        exported = evaluate_predictions(labels, actual, "binary")
        accuracy = AccuracyChange(
            keras_auc=trained["auc"],
            artifact_auc=exported["auc"],
            keras_logloss=trained["logloss"],
            artifact_logloss=exported["logloss"],
            max_abs_probability_change=float(np.nanmax(change)),
        )
    del predictors
    costs = [
        ArtifactCost(label, onnx_bytes(path), load_rss(path), *speed[label])
        for label, path in (("float32", baseline), (table_precision, onnx))
    ]
    return PrecisionCost(
        table_precision,
        costs[0],
        costs[1],
        float(np.nanmax(change)),
        head,
        accuracy,
    )


def _speeds(
    predictors: Mapping[str, OnnxPredictor], batch: Mapping[str, np.ndarray]
) -> dict[str, tuple[float, float]]:
    """`{label: (batch-1 p50 us, batch-1,024 samples/s)}`, interleaved."""
    one = {k: np.asarray(v)[:1] for k, v in batch.items()}
    full = {k: np.asarray(v)[:THROUGHPUT_BATCH_SIZE] for k, v in batch.items()}
    single: dict[str, list[float]] = {k: [] for k in predictors}
    bulk: dict[str, list[float]] = {k: [] for k in predictors}
    for predictor in predictors.values():  # warm up
        predictor.predict(one)
        predictor.predict(full)
    for _ in range(LATENCY_REPEATS):
        for label, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(one)
            single[label].append(time.perf_counter() - start)
    for _ in range(THROUGHPUT_REPEATS):
        for label, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(full)
            bulk[label].append(time.perf_counter() - start)
    return {
        label: (
            float(np.median(single[label])) * 1e6,
            THROUGHPUT_BATCH_SIZE / float(np.median(bulk[label])),
        )
        for label in predictors
    }


def _int(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:,.0f}"
