"""The DeepFM step's compute floor on this CPU: its DNN's matrix products alone.

train_throughput.py's DeepFM (39 fields x 16 dims -> 400-400-400 -> 1,
batch 4,096) spends most of a training step in 12 matrix products: per
dense layer, the forward `x @ W`, the weight gradient `x^T @ dy` and the
input gradient `dy @ W^T` (the first layer's feeds the embeddings). This
times exactly those products, float32, back to back in one compiled
TensorFlow function (XLA, as tffm's training step), and one large square
product for the machine's best matrix throughput. The sum is a floor for
any implementation's step on this machine: no framework does the same
arithmetic faster than the matrix library's best rate.

Usage: python benchmarks/dnn_floor.py [--no-record]
"""

import argparse
import datetime
import os
import platform
import time

import numpy as np

BATCH = 4096
WIDTHS = [39 * 16, 400, 400, 400, 1]
HERE = os.path.dirname(os.path.abspath(__file__))


def products():
    """(m, k, n) of each product of one step (forward and backward)."""
    shapes = []
    for fan_in, fan_out in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
        shapes.append((BATCH, fan_in, fan_out))  # x @ W
        shapes.append((fan_in, BATCH, fan_out))  # x^T @ dy
        shapes.append((BATCH, fan_out, fan_in))  # dy @ W^T
    return shapes


def time_it(function, repeats):
    function()  # compile and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    pairs = [
        (
            tf.constant(rng.standard_normal((m, k), np.float32)),
            tf.constant(rng.standard_normal((k, n), np.float32)),
        )
        for m, k, n in products()
    ]
    flops = sum(2 * m * k * n for m, k, n in products())

    @tf.function(jit_compile=True)
    def step():
        # Each product's sum keeps XLA from dropping it.
        return tf.add_n([tf.reduce_sum(a @ b) for a, b in pairs])

    square = tf.constant(rng.standard_normal((2048, 2048), np.float32))

    @tf.function(jit_compile=True)
    def big():
        return tf.reduce_sum(square @ square)

    step_s = time_it(lambda: step().numpy(), 20)
    big_s = time_it(lambda: big().numpy(), 20)
    rows = [
        ("TensorFlow: the step's 12 DNN products", step_s, flops / step_s),
        ("TensorFlow: 2048 x 2048 x 2048 product", big_s, 2 * 2048**3 / big_s),
    ]
    host = square.numpy()
    numpy_s = time_it(lambda: host @ host, 20)
    rows.append(("numpy: 2048^3 product", numpy_s, 2 * 2048**3 / numpy_s))
    try:
        import torch

        t = torch.from_numpy(host)
        torch_s = time_it(lambda: t @ t, 20)
        rows.append(("torch: 2048^3 product", torch_s, 2 * 2048**3 / torch_s))
    except ImportError:
        pass
    big_rate = max(r for _, _, r in rows)
    load = os.getloadavg()
    lines = [
        f"### dnn_floor.py, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "",
        f"DeepFM DNN {'-'.join(map(str, WIDTHS))}, batch {BATCH:,}: "
        f"{flops / 1e9:.2f} GFLOP per training step in its matrix products "
        f"(forward and backward). TensorFlow {tf.__version__}, XLA, "
        f"float32, median of 20. Load average before the end: "
        f"{load[0]:.2f} / {load[1]:.2f}.",
        "",
        "| what | ms | GFLOP/s |",
        "| --- | ---: | ---: |",
        *(f"| {w} | {s * 1e3:.1f} | {r / 1e9:.0f} |" for w, s, r in rows),
        "",
        f"Floor of a DeepFM step at the best rate: "
        f"{flops / big_rate * 1e3:.1f} ms = "
        f"{BATCH / (flops / big_rate):,.0f} samples/s at most; at the "
        f"step's own product rate: {step_s * 1e3:.1f} ms = "
        f"{BATCH / step_s:,.0f} samples/s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
