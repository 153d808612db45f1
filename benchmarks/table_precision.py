"""Table precision: ONNX size, load RSS, speed and accuracy of int8 / float16.

Two parts, each ratio measured against float32 in the same run:
- size: a DeepFM over 26 hashed (`--ids` per field, 100,000 by default)
  + 13 numeric fields, embedding 16, MLP 400-400-400 (issue 33's model),
  untrained; raw-input ONNX bytes, load RSS (a fresh process), batch-1
  p50 and batch-1,024 samples/s through `serving.OnnxPredictor` (one
  thread), for `table_precision` float32, float16 and int8;
- accuracy: `tffm train` with its defaults (at most `--epochs`) on the
  real data sets (Frappe: train on its validation file; the Criteo and
  Avazu samples: train on train.csv), then the test split's AUC / logloss
  through each precision's ONNX against the Keras model's.
Writes its section `## table-precision` of benchmarks/RESULTS.md (a rerun
replaces it).

    python benchmarks/table_precision.py [--ids 100000] [--epochs 10]
        [--datasets frappe,criteo,avazu] [--skip-size] [--no-record]
"""

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
NAME = "table-precision"
HEADING = f"## {NAME}"
PRECISIONS = ("float16", "int8")
TARGETS = {"int8": 0.30, "float16": 0.55}  # file bytes vs float32 (issue 33)


def size_model(ids: int):
    """Issue 33's DeepFM, untrained (seed 0: the same weights each call)."""
    import keras

    import tffm

    features = [tffm.Categorical(f"C{i}", hash_bins=ids) for i in range(1, 27)]
    features += [tffm.Numeric(f"I{i}", transform="log1p") for i in range(1, 14)]
    keras.utils.set_random_seed(0)
    return tffm.DeepFM(features, embedding_dim=16, hidden_units=[400] * 3)


def export_size_model(ids: int, precision: str, path: str) -> None:
    """One export, in its own process (`--export`): its memory is freed."""
    from export import export_onnx

    export_onnx(size_model(ids), path, table_precision=precision)


def size_rows(ids: int, workdir: str) -> list[str]:
    """The size / RSS / speed table of the untrained 26-field model."""
    import subprocess

    from export.precision_cost import measure_precision_cost

    rng = np.random.default_rng(0)
    batch = {
        f"C{i}": np.array(
            [f"{k:08x}" for k in rng.integers(0, 2**32, 1024)], object
        )
        for i in range(1, 27)
    }
    batch.update(
        {f"I{i}": rng.random(1024).astype(np.float32) for i in range(1, 14)}
    )
    paths = {}
    for precision in ("float32", *PRECISIONS):
        start = time.time()
        paths[precision] = os.path.join(workdir, f"size-{precision}.onnx")
        export = ["--export", precision, paths[precision], "--ids", str(ids)]
        subprocess.run([sys.executable, __file__, *export], check=True)
        print(f"  exported {precision} in {time.time() - start:.0f} s")
    model = size_model(ids)
    lines = [
        "| precision | ONNX bytes | vs float32 | target | load RSS | "
        "vs float32 | batch-1 p50 µs | batch-1,024 samples/s | "
        "max prob. change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision in PRECISIONS:
        cost = measure_precision_cost(
            model,
            paths["float32"],
            paths[precision],
            table_precision=precision,
            batch=batch,
        )
        b, a = cost.baseline, cost.artifact
        if precision == PRECISIONS[0]:
            lines.append(
                f"| float32 | {b.file_bytes:,} | 1 | | {b.load_rss:,.0f} | 1 "
                f"| {b.batch1_p50_us:.0f} | {b.batch1024_per_s:,.0f} | 0 |"
            )
        lines.append(
            f"| {precision} | {a.file_bytes:,} "
            f"| {a.file_bytes / b.file_bytes:.3f} "
            f"| <= {TARGETS[precision]:.2f} | {a.load_rss:,.0f} "
            f"| {a.load_rss / b.load_rss:.3f} | {a.batch1_p50_us:.0f} "
            f"(float32 {b.batch1_p50_us:.0f}) | {a.batch1024_per_s:,.0f} "
            f"(float32 {b.batch1024_per_s:,.0f}) "
            f"| {cost.max_output_change:.2g} |"
        )
    return lines


def accuracy_rows(names: list[str], epochs: int, workdir: str) -> list[str]:
    """AUC / logloss change on each data set's test split."""
    import real_data

    from export import export_onnx
    from serving import OnnxPredictor
    from tffm.cli.export import read_labelled
    from tffm.encoder import KerasPredictor
    from tffm.train.config import TrainConfig
    from tffm.train.evaluation import evaluate_predictions
    from tffm.train.inputs import resolve_layout
    from tffm.train.pipeline import train

    lines = [
        "| data | model | test rows | Keras AUC / logloss | precision "
        "| AUC change | logloss change | max prob. change |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for name in names:
        base, _, _, test_files = real_data.DATASETS[name](workdir)
        config = resolve_layout(
            TrainConfig(**base, model="deepfm", epochs=epochs, seed=0)
        )
        start = time.time()
        result = train(
            config, os.path.join(workdir, f"train-{name}"), verbose=0
        )
        model = result.model
        raw, labels = read_labelled(config.layout, test_files, 1_000_000)
        keras_p = KerasPredictor(model).predict(raw)["probability"][:, 0]
        want = evaluate_predictions(labels, keras_p, "binary")
        print(f"  {name}: trained in {time.time() - start:.0f} s, {want}")
        for precision in ("float32", *PRECISIONS):
            path = export_onnx(
                model,
                os.path.join(workdir, f"{name}-{precision}.onnx"),
                table_precision=precision,
            )
            p = OnnxPredictor(path).predict(raw)["probability"][:, 0]
            got = evaluate_predictions(labels, p, "binary")
            change = np.abs(p.astype(np.float64) - keras_p).max()
            lines.append(
                f"| {name} | DeepFM (defaults, <= {epochs} epochs) "
                f"| {len(labels):,} | {want['auc']:.4f} / "
                f"{want['logloss']:.4f} | {precision} "
                f"| {got['auc'] - want['auc']:+.6f} "
                f"| {got['logloss'] - want['logloss']:+.6f} "
                f"| {change:.2g} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--datasets", default="frappe,criteo,avazu")
    parser.add_argument("--skip-size", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--export", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        export_size_model(args.ids, *args.export)
        return
    import onnxruntime as ort

    workdir = tempfile.mkdtemp(prefix="tffm-table-precision-")
    try:
        sections = []
        if not args.skip_size:
            sections.append(
                f"Size: DeepFM, 26 hashed x {args.ids:,} ids + 13 numeric "
                "fields, embedding 16, MLP 400-400-400, untrained; "
                "raw-input ONNX; load RSS of a fresh process; one thread.\n\n"
                + "\n".join(size_rows(args.ids, workdir))
            )
        names = [n for n in args.datasets.split(",") if n]
        if names:
            sections.append(
                "Accuracy: test split through each ONNX file against the "
                "Keras model (`tffm train` defaults, seed 0).\n\n"
                + "\n".join(accuracy_rows(names, args.epochs, workdir))
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    command = "python -m benchmarks table-precision"
    extra = " ".join(sys.argv[1:])
    body = (
        f"`{command}{' -- ' + extra if extra else ''}`, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, "
        f"{os.cpu_count()} cores, CPU only, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}; load "
        f"average at the end {load[0]:.2f} (other work shares the cores).\n\n"
        + "\n\n".join(sections)
        + "\n"
    )
    print(f"{HEADING}\n\n{body}")
    if not args.no_record:
        record_section(NAME, body)


if __name__ == "__main__":
    main()
