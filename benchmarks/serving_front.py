"""Serving front: raw-feature `OnnxPredictor` vs onnxruntime on the ids core.

Builds a DeepFM over 26 hashed + 13 numeric features (embedding 16, MLP
400-400-400, as in issue 9), exports it once (raw-input and ids-in ONNX),
then times, alternating in one run:
- `OnnxPredictor.predict` on raw values (lists of str / float), batch 1
  p50 / p99 and batch 1,024 samples/s; `predict_columns` (numpy columns);
- the same predictor fed by the old per-string `pyfarmhash` loop (before);
- `OnnxPredictor` on the same core behind the old raw front (7 nodes per
  hashed feature, rebuilt here from the ids-in core: the before of the
  shared-node front in `export/onnx_front.py`);
- onnxruntime on the ids-in core (the floor).
Writes its section of benchmarks/RESULTS.md.

    python benchmarks/serving_front.py [--no-record]

The model is exported afresh on every run (into `--workdir`), so the
figures are always those of the current exporter.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np
from results import record_section

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(workdir: str) -> tuple[str, str]:
    import keras

    import tffm
    from export import export_for_serving

    raw = os.path.join(workdir, "onnx", "ctr-1.onnx")
    ids = os.path.join(workdir, "onnx", "ctr-1.ids.onnx")
    features = [
        tffm.Categorical(f"C{i}", hash_bins=10_000) for i in range(1, 27)
    ]
    features += [tffm.Numeric(f"I{i}", transform="log1p") for i in range(1, 14)]
    keras.utils.set_random_seed(0)
    model = tffm.DeepFM(features, embedding_dim=16, hidden_units=[400] * 3)
    export_for_serving(model, workdir, model_name="ctr", verify=False)
    return raw, ids


def old_front_model(ids_path: str, raw_path: str, out: str) -> str:
    """The ids-in core behind the raw front as it was before the rewrite.

    Per hashed feature: 4 Constant nodes, then Cast, Mod, Cast, Add,
    Equal, Where, Cast (the code of `export/onnx.py::_add_raw_front` at
    commit 68deb87, numeric and hashed features only: what this model
    has). Metadata from the new raw file, so `OnnxPredictor` loads it.
    """
    import farmhash
    import onnx
    from onnx import TensorProto
    from onnx import helper

    import tffm
    from tffm import constants

    proto = onnx.load(ids_path)
    meta = {p.key: p.value for p in onnx.load(raw_path).metadata_props}
    features = tffm.features.features_from_json(meta[constants.ONNX_FEATURES])
    empty = int(
        np.array([farmhash.fingerprint64("")], np.uint64).view(np.int64)[0]
    )
    graph = proto.graph
    inputs = {i.name: i for i in graph.input}
    new_inputs, front = [], []
    for feature in features:
        name = feature.name
        if getattr(feature, "hash_bins", None) is None:
            new_inputs.append(inputs[name])
            continue
        ids = f"{name}__ids"
        for node in graph.node:
            node.input[:] = [ids if x == name else x for x in node.input]
        p = f"{name}__"

        def const(suffix, dtype, value, p=p):
            return helper.make_node(
                "Constant",
                [],
                [p + suffix],
                value=helper.make_tensor(p + suffix, dtype, [], [value]),
            )

        front += [
            const("bins", TensorProto.UINT64, feature.hash_bins),
            const("empty", TensorProto.INT64, empty),
            const("one", TensorProto.INT64, 1),
            const("zero", TensorProto.INT64, 0),
            helper.make_node("Cast", [name], [p + "fp"], to=TensorProto.UINT64),
            helper.make_node("Mod", [p + "fp", p + "bins"], [p + "bucket_u"]),
            helper.make_node(
                "Cast", [p + "bucket_u"], [p + "bucket"], to=TensorProto.INT64
            ),
            helper.make_node("Add", [p + "bucket", p + "one"], [p + "hashed"]),
            helper.make_node("Equal", [name, p + "empty"], [p + "missing"]),
            helper.make_node(
                "Where",
                [p + "missing", p + "zero", p + "hashed"],
                [p + "ids64"],
            ),
            helper.make_node(
                "Cast", [p + "ids64"], [ids], to=TensorProto.INT32
            ),
        ]
        new_inputs.append(
            helper.make_tensor_value_info(
                name, TensorProto.INT64, ["batch_size"]
            )
        )
    del graph.input[:]
    graph.input.extend(new_inputs)
    nodes = front + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, out)
    return out


def front_nodes(path: str, core_path: str) -> str:
    """The raw front's size: its nodes beyond the ids-in core's."""
    import onnx

    def count(p):
        nodes = onnx.load(p).graph.node
        return len(nodes), sum(n.op_type == "Constant" for n in nodes)

    (total, consts), (core_total, core_consts) = count(path), count(core_path)
    return (
        f"{total - core_total} nodes ({consts - core_consts} of them Constant)"
    )


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
    old_path = old_front_model(
        ids_path, raw_path, os.path.join(args.workdir, "old-front.onnx")
    )
    old_front = OnnxPredictor(old_path, threads=1)
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
        feeds = predictor.feed.columns(columns)  # fingerprints, made once
        candidates = {
            "OnnxPredictor.predict (raw lists)": lambda raw=raw: (
                predictor.predict(raw)
            ),
            "OnnxPredictor.predict_columns (numpy)": lambda c=columns: (
                predictor.predict_columns(c)
            ),
            "old front: OnnxPredictor.predict_columns": lambda c=columns: (
                old_front.predict_columns(c)
            ),
            "onnxruntime only, raw model (fingerprints in)": lambda f=feeds: (
                predictor.run(f)
            ),
            "onnxruntime only, raw model, old front": lambda f=feeds: (
                old_front.run(f)
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
        "embedding 16, MLP 400-400-400; one intra-op thread. Raw front: "
        f"{front_nodes(raw_path, ids_path)}; old front: "
        f"{front_nodes(old_path, ids_path)}, rebuilt from the same ids-in "
        "core.\n",
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
        record_section("serving_front", text)


if __name__ == "__main__":
    main()
