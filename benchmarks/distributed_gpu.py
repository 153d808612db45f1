"""JAX data-parallel training throughput vs the single-device path.

Trains the same DeepFM with `model.fit` on numpy arrays (no TensorFlow,
no tf.data: the GPU machine has JAX and no TF) twice: on the default
device with no distribution, and under `keras.distribution.DataParallel`
over every JAX device (`tffm.train.distribute.jax_distribution`, what
`tffm train --distribution data-parallel` uses). Reports rows/s over
timed epochs after a warm-up epoch (compilation), and whether the two
runs end with the same weights.

On one GPU the mesh has one device, so this measures the overhead of the
distribution path itself (sharded inputs, NamedSharding'd variables); on
several it measures the scaling.

    KERAS_BACKEND=jax python benchmarks/distributed_gpu.py            # GPU
    KERAS_BACKEND=jax python benchmarks/distributed_gpu.py --quick    # CPU
    ... --host-devices 2   # CPU: split the host into 2 XLA devices
    ... --record           # write its section of benchmarks/RESULTS.md
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny, CPU")
    parser.add_argument("--host-devices", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1 << 20)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.batch_size, args.epochs = 4096, 512, 2
    if args.host_devices:
        os.environ["XLA_FLAGS"] = (
            f"--xla_force_host_platform_device_count={args.host_devices}"
        )
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, ROOT)
    import jax
    import keras
    import numpy as np

    import tffm

    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    jax.config.update("jax_default_matmul_precision", "highest")
    num_devices = len(jax.devices())
    if args.batch_size % num_devices:
        raise SystemExit(f"--batch-size must divide by {num_devices}")
    features, x, y = _data(tffm, np, args.rows, quick=args.quick)
    results = {}
    weights = {}
    for name in ("single-device", "data-parallel"):
        # Keras' DataParallel itself, also over one device (where
        # `tffm train` skips it: `distribute.jax_distribution`).
        layout = (
            keras.distribution.DataParallel(
                devices=keras.distribution.list_devices()
            )
            if name == "data-parallel"
            else None
        )
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(layout)
        try:
            keras.utils.set_random_seed(0)
            model = tffm.DeepFM(
                features,
                embedding_dim=16 if not args.quick else 4,
                hidden_units=[400, 400, 400] if not args.quick else [16],
            )
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss="binary_crossentropy",
            )
            fit = dict(batch_size=args.batch_size, shuffle=False, verbose=0)
            model.fit(x, y, epochs=1, **fit)  # compile + warm up
            jax.block_until_ready([v.value for v in model.weights])
            start = time.perf_counter()
            model.fit(x, y, epochs=args.epochs, **fit)
            jax.block_until_ready([v.value for v in model.weights])
            seconds = time.perf_counter() - start
        finally:
            keras.distribution.set_distribution(previous)
        results[name] = args.rows * args.epochs / seconds
        weights[name] = [np.asarray(w.value) for w in model.weights]
    gap = max(
        float(np.abs(a - b).max())
        for a, b in zip(
            weights["single-device"], weights["data-parallel"], strict=True
        )
    )
    device = jax.devices()[0]
    summary = {
        "devices": f"{num_devices} x {device.device_kind}",
        "platform": device.platform,
        "rows": args.rows,
        "batch_size": args.batch_size,
        "single_device_rows_per_s": round(results["single-device"]),
        "data_parallel_rows_per_s": round(results["data-parallel"]),
        "ratio": round(results["data-parallel"] / results["single-device"], 3),
        "max_weight_gap": gap,
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
        "jax": jax.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(summary, indent=2))
    if args.record:
        _record(summary)
    return 0


def _data(tffm, np, rows, *, quick):
    """Encoded ids / values, Criteo-like: 26 categorical, 13 numeric."""
    rng = np.random.default_rng(0)
    num_cat, num_num = (4, 2) if quick else (26, 13)
    vocab = 100 if quick else 100_000
    features = [
        tffm.Categorical(f"C{i}", hash_bins=vocab) for i in range(num_cat)
    ] + [tffm.Numeric(f"I{i}") for i in range(num_num)]
    x = {
        f"C{i}": rng.integers(0, vocab + 1, rows).astype("int32")
        for i in range(num_cat)
    }
    x.update(
        {
            f"I{i}": rng.normal(size=rows).astype("float32")
            for i in range(num_num)
        }
    )
    y = rng.integers(0, 2, (rows, 1)).astype("float32")
    return features, x, y


def _record(summary):
    lines = [
        "### JAX data-parallel vs single device (distributed_gpu.py)",
        "",
        f"{summary['devices']} ({summary['platform']}), JAX {summary['jax']}, "
        f"Keras {summary['keras']}; {summary['rows']:,} rows, batch "
        f"{summary['batch_size']}, DeepFM 26 categorical + 13 numeric.",
        "",
        "| path | rows/s |",
        "| --- | ---: |",
        f"| single device | {summary['single_device_rows_per_s']:,} |",
        f"| DataParallel | {summary['data_parallel_rows_per_s']:,} |",
        "",
        f"Ratio {summary['ratio']}; max weight gap after training "
        f"{summary['max_weight_gap']:.2e}.",
    ]
    from benchmarks.results import record_section  # deferred: ROOT on sys.path

    record_section("distributed_gpu", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
