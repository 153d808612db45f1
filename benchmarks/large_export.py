"""Exports a DeepFM over 2 GB (issue #9: 39 fields x 1M ids) and verifies it.

A protobuf (hence a plain `.onnx` file, and the frozen TensorFlow graph
tf2onnx converts) cannot exceed 2 GB: a plain Keras DeepFM at this size
fails `model.export(format="onnx")` with "Cannot create a tensor proto
whose content is larger than 2GB" (`--plain-keras` shows it). tffm's
`export_for_serving` keeps the ONNX weights in external data files and
writes the SavedModel as usual; then the parity check runs Keras, the
SavedModel and onnxruntime on the edge-case batches (sizes 1, 64, 10,000).

Prints and writes to benchmarks/RESULTS.md: time, peak RSS, file sizes
and the parity result. A watchdog stops the run (exit 3) if the process
RSS passes `--max-rss-gb` (other work shares this machine's memory).

    python benchmarks/large_export.py [--fields 39] [--ids 1000000]
        [--plain-keras] [--max-rss-gb 16] [--table-precision int8]
        [--no-record]

With `--table-precision int8` (or float16) the ONNX files store the
tables at that precision and the report adds the cost table that
`export_for_serving` measures against a float32 export.
"""

import argparse
import datetime
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time

from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def watchdog(limit_gb: float) -> None:
    def watch() -> None:
        while True:
            if rss_gb() > limit_gb:
                print(f"RSS above {limit_gb} GB: stopping", flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def tree_gb(path: str) -> dict[str, float]:
    sizes = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            sizes[os.path.relpath(full, path)] = os.path.getsize(full) / 2**30
    return sizes


def plain_keras_export(fields: int, ids: int, workdir: str) -> str:
    """A plain Keras DeepFM's `model.export(format="onnx")`: the error."""
    import keras

    inputs = keras.Input((fields,), dtype="int32")
    table = keras.layers.Embedding(fields * ids, 16)
    offsets = keras.ops.arange(fields, dtype="int32") * ids
    vectors = table(inputs + offsets)  # (B, F, 16)
    flat = keras.layers.Flatten()(vectors)
    logit = keras.layers.Dense(1)(keras.layers.Dense(400, "relu")(flat))
    model = keras.Model(inputs, logit)
    model(keras.ops.zeros((2, fields), "int32"))  # Keras exports called models
    try:
        model.export(os.path.join(workdir, "plain.onnx"), format="onnx")
    except Exception as error:  # what users get
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return "exported (no error)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=39)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--plain-keras", action="store_true")
    parser.add_argument("--max-rss-gb", type=float, default=16.0)
    parser.add_argument(
        "--table-precision",
        choices=["float32", "float16", "int8"],
        default="float32",
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    watchdog(args.max_rss_gb)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    import tffm
    from export import export_for_serving

    load_before = os.getloadavg()
    workdir = args.workdir or tempfile.mkdtemp(prefix="tffm-large-export-")
    try:
        plain = None
        if args.plain_keras:
            plain = plain_keras_export(args.fields, args.ids, workdir)
            print("plain Keras:", plain, flush=True)
            keras.backend.clear_session()
        features = [
            tffm.Categorical(f"C{i}", hash_bins=args.ids - 1)
            for i in range(1, args.fields + 1)
        ]
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model = tffm.DeepFM(features, embedding_dim=16, hidden_units=[400] * 3)
        build_s = time.perf_counter() - start
        from export.onnx_data import weight_bytes

        weights_gb = weight_bytes(model) / 2**30
        print(f"model: {weights_gb:.2f} GiB of weights", flush=True)
        start = time.perf_counter()
        result = export_for_serving(
            model,
            workdir,
            model_name="big",
            table_precision=args.table_precision,
        )
        export_s = time.perf_counter() - start
        ok = result.report is not None and result.report.ok
        print("parity:", "ok" if ok else "FAILED", flush=True)
        print(result.report.table() if result.report else "", flush=True)
        sizes = tree_gb(workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    big = sorted(
        (f"`{name}` {size:.2f}" for name, size in sizes.items() if size > 0.1),
    )
    lines = [
        f"\n### large_export.py, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only\n",
        f"tffm.DeepFM over {args.fields} hashed fields x {args.ids:,} ids, "
        f"embedding 16, DNN 400-400-400: {weights_gb:.2f} GiB of weights "
        f"(random initial values). Versions: keras {keras.__version__}, "
        f"tensorflow {tf.__version__}, tf2onnx "
        f"{__import__('tf2onnx').__version__}, onnx "
        f"{__import__('onnx').__version__}, onnxruntime "
        f"{__import__('onnxruntime').__version__}. Load average before: "
        f"{' / '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' / '.join(f'{x:.2f}' for x in load_after)}.\n",
    ]
    if plain is not None:
        lines.append(
            "- plain Keras DeepFM (one `(B, 39)` input, one "
            f"`({args.fields * args.ids:,}, 16)` table), "
            f"`model.export(format='onnx')`: {plain}\n"
        )
    lines += [
        f"- `export_for_serving` (SavedModel, raw-input and ids-in ONNX with "
        f"external data, parity check): {export_s:.0f} s after {build_s:.0f} s "
        f"to build the model; peak RSS {peak_rss_gb():.1f} GiB; parity "
        f"{'ok' if ok else 'FAILED'} on the edge-case batches (1, 64, "
        "10,000 rows; Keras vs SavedModel vs onnxruntime, 1e-5).\n",
        f"- Files over 0.1 GiB (GiB): {', '.join(big)}.\n",
    ]
    if args.table_precision != "float32":
        lines.insert(1, f"`--table-precision {args.table_precision}`.\n")
    if result.cost is not None:
        lines.append("\n" + result.cost.table() + "\n")
    text = "".join(lines)
    print(text)
    if not args.no_record:
        record_section("large_export", text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
