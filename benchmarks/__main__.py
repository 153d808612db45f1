"""`python -m benchmarks NAME ...`: run a chosen set of benchmarks.

Each benchmark is a script of this folder (one per figure RESULTS.md
reports), run in its own process with the arguments below; each prints
its table and writes it as its section of benchmarks/RESULTS.md (a rerun
replaces it; `benchmarks/results.py`) with machine, versions
and date. At the end this prints one summary table. Arguments after `--`
go to every chosen script (e.g. its `--help` or its small mode).
`baselines.py` is no benchmark: `real_data.py` imports it.

    python -m benchmarks --list
    python -m benchmarks train large-vocab encoded serving-front
    python -m benchmarks train --no-record     # print only
    python -m benchmarks train -- --quick      # train_throughput.py --quick
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# name: (script, arguments, what it measures)
BENCHMARKS = {
    "train": (
        "train_throughput.py",
        [],
        "DeepFM / FM training samples/s vs plain Keras and PyTorch, TF+JAX",
    ),
    "large-vocab": (
        "train_throughput.py",
        [
            "--vocab",
            "1000000",
            "--backends",
            "tensorflow",
            "--rows",
            "tffm_deepfm,keras_deepfm",
        ],
        "39 x 1M ids: samples/s and peak RSS (row-wise Adam)",
    ),
    "encoded": (
        "encoded_input.py",
        [],
        "encoded binary input: rows/s per core vs the text reader",
    ),
    "mixed-precision": (
        "mixed_precision.py",
        [],
        "AUC change of mixed_bfloat16",
    ),
    "large-export": (
        "large_export.py",
        [],
        "39 x 1M model: SavedModel + external-data ONNX + parity",
    ),
    "serving-front": (
        "serving_front.py",
        [],
        "OnnxPredictor on raw features: batch 1 p50/p99, batch 1,024",
    ),
    "table-precision": (
        "table_precision.py",
        [],
        "int8 / float16 tables: ONNX bytes, load RSS, speed, AUC change",
    ),
    "serving-load": (
        "serving_load.py",
        [],
        "tffm serve under load, REST and gRPC",
    ),
    "real-data": (
        "real_data.py",
        [],
        "LR / FM / DeepFM accuracy on the shared real data sets",
    ),
    "choose-defaults": (
        "choose_defaults.py",
        [],
        "holdout grids behind the defaults by task and model",
    ),
    "size-sweep": (
        "choose_defaults.py",
        ["--sizes", "5000,20000,full", "--models", "deepfm,fm"],
        "default DeepFM / FM beside the linear guard at each training size",
    ),
    "precise-bn": (
        "precise_bn.py",
        [],
        "Frappe DeepFM calibration with and without precise batch norm",
    ),
    "streaming-memory": (
        "streaming_memory.py",
        [],
        "reader RSS over a 1M-row file",
    ),
    "gpu": ("gpu_train.py", [], "H100 training (JAX, no TensorFlow)"),
    "distributed-gpu": (
        "distributed_gpu.py",
        ["--record"],
        "JAX data-parallel vs single device",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run")
    parser.add_argument("--list", action="store_true", help="list them")
    parser.add_argument(
        "--no-record", action="store_true", help="do not write RESULTS.md"
    )
    argv = sys.argv[1:]
    forwarded = []
    if "--" in argv:  # the rest goes to the scripts
        at = argv.index("--")
        argv, forwarded = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name, (script, extra, what) in BENCHMARKS.items():
            print(f"{name:18} {what}  [{script} {' '.join(extra)}]")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; see --list")
    summary = []
    for name in args.names:
        script, extra, what = BENCHMARKS[name]
        command = [sys.executable, os.path.join(HERE, script), *extra]
        command += forwarded
        if args.no_record:  # the one opt-in script drops its flag
            command = [a for a in command if a != "--record"]
            if "--record" not in extra:
                command.append("--no-record")
        print(f"\n== {name}: {what}\n$ {' '.join(command)}", flush=True)
        start = time.time()
        code = subprocess.call(command, cwd=os.path.dirname(HERE))
        summary.append((name, code, time.time() - start))
    print("\n| benchmark | exit | minutes |\n| --- | ---: | ---: |")
    for name, code, seconds in summary:
        print(f"| {name} | {code} | {seconds / 60:.1f} |")
    return max(code for _, code, _ in summary)


if __name__ == "__main__":
    sys.exit(main())
