"""The streaming reader's memory stays flat as it reads a large file.

Writes a synthetic Criteo-format TSV (default 1,000,000 rows, ~200 MB) to a
temporary directory, reads it with `tffm.data.read_criteo` (shuffle buffer
100,000 rows, batches of 4,096), and samples the process RSS every 25
batches. Flat means: the RSS after the whole file is within a small margin
of the RSS after the first tenth; the reader's own footprint (RSS minus
the RSS before reading, TensorFlow loaded) is far below the file size.

Usage: python benchmarks/streaming_memory.py [--rows N] [--no-record]
"""

import argparse
import datetime
import os
import platform
import tempfile
import time

import numpy as np
from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_file(path, rows, seed=0):
    rng = np.random.default_rng(seed)
    chunk = 50_000
    with open(path, "w") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            labels = rng.integers(0, 2, n)
            ints = rng.integers(0, 1000, (n, 13))
            cats = rng.integers(0, 2**32, (n, 26))
            lines = []
            for b in range(n):
                cells = [str(labels[b])] + [str(v) for v in ints[b]]
                cells += [f"{v:08x}" for v in cats[b]]
                lines.append("\t".join(cells))
            f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    from tffm import data

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.tsv")
        write_file(path, args.rows)
        size_mb = os.path.getsize(path) / 2**20
        import tensorflow as tf

        tf.constant(0)  # TensorFlow's own start-up memory, before reading
        baseline = rss_mb()
        source = data.read_criteo(
            path,
            data.ReadOptions(batch_size=4096, shuffle_buffer=100_000, seed=0),
        )
        samples, rows = [], 0
        start = time.time()
        for i, (_, labels) in enumerate(source.dataset):
            rows += int(labels.shape[0])
            if i % 25 == 0:
                samples.append((rows, rss_mb()))
        seconds = time.time() - start
        samples.append((rows, rss_mb()))
    tenth = next(mb for r, mb in samples if r >= args.rows // 10)
    peak = max(mb for _, mb in samples)
    final = samples[-1][1]
    table = "\n".join(
        [
            "| file | rows | RSS before reading | RSS after 10% | RSS at end "
            "| peak RSS | rows/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {size_mb:.0f} MB | {rows:,} | {baseline:.0f} MB "
            f"| {tenth:.0f} MB | {final:.0f} MB | {peak:.0f} MB "
            f"| {rows / seconds:,.0f} |",
        ]
    )
    print(table)
    print(
        f"growth after the first tenth: {final - tenth:+.0f} MB "
        f"(file {size_mb:.0f} MB)"
    )
    if not args.no_record:
        stamp = datetime.date.today().isoformat()
        machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        record_section(
            "streaming_memory",
            f"\n### streaming_memory.py, {stamp}, {machine}\n\n"
            f"{table}\n\nGrowth after the first tenth of the file: "
            f"{final - tenth:+.0f} MB.\n",
        )


if __name__ == "__main__":
    main()
