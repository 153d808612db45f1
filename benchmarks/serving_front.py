"""Serving front: raw-feature `OnnxPredictor` vs onnxruntime on the ids core.

Builds a DeepFM over 26 hashed + 13 numeric features (embedding 16, MLP
400-400-400, as in issue 9), exports it once (raw-input and ids-in ONNX),
then times, alternating in one run:
- `OnnxPredictor.predict` on raw values (lists of str / float), batch 1
  p50 / p99 and batch 1,024 samples/s; `predict_columns` (numpy columns);
- the same predictor fed by the old per-string `pyfarmhash` loop (before);
- onnxruntime on the ids-in core (the floor).
Appends a table to benchmarks/RESULTS.md.

    python benchmarks/serving_front.py [--no-record]
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def build(workdir: str) -> tuple[str, str]:
    raw = os.path.join(workdir, "onnx", "ctr-1.onnx")
    ids = os.path.join(workdir, "onnx", "ctr-1.ids.onnx")
    if not os.path.exists(raw):
        import keras

        import tffm
        from export import export_for_serving

        features = [
            tffm.Categorical(f"C{i}", hash_bins=10_000) for i in range(1, 27)
        ]
        features += [
            tffm.Numeric(f"I{i}", transform="log1p") for i in range(1, 14)
        ]
        keras.utils.set_random_seed(0)
        model = tffm.DeepFM(features, embedding_dim=16, hidden_units=[400] * 3)
        export_for_serving(model, workdir, model_name="ctr", verify=False)
    return raw, ids


def raw_batch(size: int, rng: np.random.Generator) -> dict[str, list]:
    batch: dict[str, list] = {
        f"C{i}": [f"{k:08x}" for k in rng.integers(0, 2**32, size)]
        for i in range(1, 27)
    }
    batch.update({f"I{i}": rng.random(size).tolist() for i in range(1, 14)})
    return batch


def time_calls(fn, repeats: int) -> np.ndarray:
    for _ in range(min(50, repeats)):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "tffm-serving-front"),
    )
    parser.add_argument("--repeats", type=int, default=3000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    raw_path, ids_path = build(args.workdir)

    import farmhash
    import onnxruntime as ort

    from serving import OnnxPredictor

    predictor = OnnxPredictor(raw_path, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    core = ort.InferenceSession(
        ids_path, options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)

    def before(raw):  # the old feed: check_raw + one pyfarmhash call per string
        from tffm.features import check_raw

        feeds = check_raw(predictor.features, raw)
        for name in predictor.feed.hashed:
            values = feeds[name]
            flat = [farmhash.fingerprint64(v) for v in values.reshape(-1)]
            feeds[name] = (
                np.array(flat, np.uint64).view(np.int64).reshape(values.shape)
            )
        return predictor.run(feeds)

    rows = []
    for size, repeats in (
        (1, args.repeats),
        (1024, max(20, args.repeats // 30)),
    ):
        raw = raw_batch(size, rng)
        columns = {
            k: np.array(v, dtype=object if k.startswith("C") else np.float32)
            for k, v in raw.items()
        }
        ids = {
            k: (
                rng.integers(0, 10_000, size).astype(np.int32)
                if k.startswith("C")
                else np.asarray(v, np.float32)
            )
            for k, v in raw.items()
        }
        names = [o.name for o in core.get_outputs()]
        candidates = {
            "OnnxPredictor.predict (raw lists)": lambda raw=raw: (
                predictor.predict(raw)
            ),
            "OnnxPredictor.predict_columns (numpy)": lambda c=columns: (
                predictor.predict_columns(c)
            ),
            "old feed (check_raw + pyfarmhash per string)": lambda raw=raw: (
                before(raw)
            ),
            "feed only (OnnxFeed, no model)": lambda raw=raw: predictor.feed(
                raw
            ),
            "onnxruntime, ids-in core": lambda ids=ids: core.run(names, ids),  # noqa: B023
        }
        results = {name: [] for name in candidates}
        for _ in range(3):  # alternate, so load changes hit all alike
            for name, fn in candidates.items():
                results[name].append(time_calls(fn, repeats))
        for name, chunks in results.items():
            times = np.concatenate(chunks)
            p50, p99 = np.percentile(times, [50, 99]) * 1e6
            rows.append((size, name, p50, p99, size / np.median(times)))
    load = os.getloadavg()
    lines = [
        f"\n### Serving front ({datetime.date.today()}, `benchmarks/serving_front.py`)\n",  # noqa: E501
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, onnxruntime "
        f"{ort.__version__}; load average at the end {load[0]:.2f} / "
        f"{load[1]:.2f} (1 / 5 min; above ~0.5 means other work shared the "
        "cores). Model: DeepFM, 26 hashed + 13 numeric raw features, "
        "embedding 16, MLP 400-400-400; one intra-op thread.\n",
        "| batch | path | p50 µs | p99 µs | samples/s |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for size, name, p50, p99, rate in rows:
        lines.append(
            f"| {size} | {name} | {p50:,.0f} | {p99:,.0f} | {rate:,.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        with open(RESULTS, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
