"""Encoded binary input vs the text reader: rows/s per core (issue #9).

One process pinned to one core (and TensorFlow to one thread), in one run:
1. text: `read_criteo` + `FeatureEncoder` on a synthetic Criteo TSV
   (26 hashed categoricals, 13 log1p numerics; what `tffm train` reads);
2. encode once: `tffm.data.encode_files` on the same file;
3. read + shuffle + batch of the encoded form (no model), on a larger
   encoded set (`write_encoded` of synthetic ids, `--encoded-rows`): the
   numpy iterator (JAX / torch), the `tf.data` reader consumed inside a
   TensorFlow function (as `model.fit` consumes it) and the Keras
   `PyDataset`; batch 4,096 and 65,536, shuffle buffer 100,000 rows.
Each figure: best of `--repeats` full epochs, as rows per wall second and
rows per CPU second of the process (the second is what "per core" means
when other work shares the core). The peak RSS growth while reading the
encoded set shows the reader streams (about two windows, not the data).
Writes its section of benchmarks/RESULTS.md (machine, versions, load).

    python benchmarks/encoded_input.py [--text-rows N] [--encoded-rows N]
        [--repeats N] [--no-record]
"""

import argparse
import datetime
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def write_criteo(path, rows, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            labels = rng.integers(0, 2, n)
            ints = rng.integers(0, 1000, (n, 13))
            cats = rng.integers(0, 2**32, (n, 26))
            lines = []
            for b in range(n):
                cells = [str(labels[b])] + [str(v) for v in ints[b]]
                cells += [f"{v:08x}" for v in cats[b]]
                lines.append("\t".join(cells))
            f.write("\n".join(lines) + "\n")


def criteo_features():
    import tffm

    features = [
        tffm.Categorical(f"C{i}", hash_bins=10_000) for i in range(1, 27)
    ]
    features += [tffm.Numeric(f"I{i}", transform="log1p") for i in range(1, 14)]
    return features


def synthetic_batches(features, rows, seed=1, size=65_536):
    rng = np.random.default_rng(seed)
    for start in range(0, rows, size):
        n = min(size, rows - start)
        batch = {}
        for f in features:
            if getattr(f, "hash_bins", None):
                batch[f.name] = rng.integers(0, f.num_ids, n, dtype=np.int32)
            else:
                batch[f.name] = rng.random(n, dtype=np.float32)
        yield batch, (rng.random(n) < 0.25).astype(np.float32)


def measure(fn, repeats):
    """Best (rows per wall second, rows per CPU second) of `repeats` runs.

    One untimed run first (graph tracing, page cache).
    """
    fn()
    best = (0.0, 0.0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        rows = fn()
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        if rows / wall > best[0]:
            best = (rows / wall, rows / max(cpu, 1e-9))
    return best


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-rows", type=int, default=200_000)
    parser.add_argument("--encoded-rows", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import tffm
    from tffm import data
    from tffm.data.encoded_keras import EncodedPyDataset

    load_before = os.getloadavg()
    features = criteo_features()
    encoder = tffm.FeatureEncoder(features)
    rows = []
    tmp = tempfile.mkdtemp(prefix="tffm-encoded-bench-")
    try:
        text = os.path.join(tmp, "day.tsv")
        write_criteo(text, args.text_rows)
        options = data.ReadOptions(batch_size=4096, shuffle_buffer=100_000)

        @tf.function
        def count(dataset):  # consumed in a graph, as `model.fit` does
            total = tf.constant(0, tf.int64)
            for _, label in dataset:
                total += tf.shape(label, tf.int64)[0]
            return total

        text_dataset = encoder.map_dataset(
            data.read_criteo(text, options).dataset
        )

        def text_epoch():
            return int(count(text_dataset))

        text_rate = measure(text_epoch, args.repeats)
        rows.append(("text: read_criteo + FeatureEncoder", 4096, text_rate))
        layout = data.DataLayout(format="criteo")
        start = time.perf_counter()
        data.encode_files(
            layout, text, os.path.join(tmp, "enc"), features, batch_size=4096
        )
        encode_rate = args.text_rows / (time.perf_counter() - start)
        big = os.path.join(tmp, "big")
        data.write_encoded(
            synthetic_batches(features, args.encoded_rows), big, features
        )
        encoded = data.EncodedData(big)
        rss_before = peak_rss_mb()
        for size in (4096, 65_536):
            opts = data.ReadOptions(
                batch_size=size, shuffle_buffer=100_000, seed=0
            )

            def numpy_epoch(opts=opts):
                return sum(len(y) for _, y in encoded.batches(opts))

            dataset = data.read_encoded(big, opts).dataset

            def tf_epoch(dataset=dataset):  # each pass: the next epoch
                return int(count(dataset))

            def py_dataset_epoch(opts=opts):
                ds = EncodedPyDataset(encoded, opts)
                return sum(len(ds[i][1]) for i in range(len(ds)))

            for name, fn in (
                ("encoded: numpy iterator", numpy_epoch),
                ("encoded: tf.data", tf_epoch),
                ("encoded: keras PyDataset", py_dataset_epoch),
            ):
                rows.append((name, size, measure(fn, args.repeats)))
        rss_growth = peak_rss_mb() - rss_before
        shard_mb = os.path.getsize(encoded.shards[0].path) / 2**20
        data_mb = sum(os.path.getsize(s.path) for s in encoded.shards) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    lines = [
        f"\n### encoded_input.py, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only\n",
        f"One process pinned to core {core}, TensorFlow 1 thread. Python "
        f"{platform.python_version()}, numpy {np.__version__}, tensorflow "
        f"{tf.__version__}, keras {keras.__version__}. Load average (1/5/15 "
        f"min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' / '.join(f'{x:.2f}' for x in load_after)}. Text: "
        f"{args.text_rows:,} synthetic Criteo rows (26 hashed + 13 log1p "
        f"numeric); encoding them once with `encode_files` ran at "
        f"{encode_rate:,.0f} rows/s. Encoded reads: {args.encoded_rows:,} "
        f"rows ({data_mb:,.0f} MB in {len(encoded.shards)} shards of "
        f"{shard_mb:,.0f} MB, warm page cache), shuffle buffer 100,000 rows "
        f"(windows of one shard); peak RSS grew {rss_growth:,.0f} MB while "
        f"reading them. Best of {args.repeats} epochs each, after one "
        "untimed.\n",
        "| path | batch | rows/s (wall) | rows per CPU second | vs text |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, size, (wall, cpu) in rows:
        lines.append(
            f"| {name} | {size:,} | {wall:,.0f} | {cpu:,.0f} | "
            f"{cpu / text_rate[1]:.1f}x |"
        )
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    if not args.no_record:
        record_section("encoded_input", text_out)


if __name__ == "__main__":
    main()
