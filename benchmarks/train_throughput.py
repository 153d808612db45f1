"""Training throughput: tffm DeepFM / FM vs plain Keras and PyTorch models.

Workload (issue #9): 39 categorical fields, `--vocab` ids per field (default
10,000), embedding 16, DNN 400-400-400, Adam(1e-3), batch 4,096,
pre-encoded int ids drawn uniformly, random labels. Rows:

- `keras_deepfm` / `keras_fm`: a plain Keras 3 model written here: one
  `(batch, 39)` int input, offsets added in the model, two
  `keras.layers.Embedding`s (dim 16 and dim 1) over one id space, the
  square-of-sum FM identity, `model.fit` on one numpy array;
- `tffm_deepfm` / `tffm_fm`: `tffm.DeepFM` / `tffm.FM` with 39
  `tffm.Categorical(f"c{i}", hash_bins=vocab - 1)`, `model.fit` on a dict
  of numpy arrays named by feature (what the README tells users to do);
- `tffm_deepfm_ema`: `tffm_deepfm` with the weight average (`ema` 0.995)
  that `tffm train`'s binary DeepFM keeps by default;
- `tffm_deepfm_train`: all of `tffm train`'s binary DeepFM defaults that
  change a step: `ema` 0.995 and, on a table of under 1M rows such as
  this one, the whole table's L2 (`table_l2` 1e-3);
- `torch_deepfm` / `torch_fm`: the same models hand-written in PyTorch
  (eager, 2 threads, `torch.optim.Adam`, dense embedding gradients),
  skipped when torch is not installed.

The Keras backend is chosen per process, so each backend (and torch) runs
in a child process that builds its models and warms them up once; the
parent then asks the children for timed windows in turn (A B C ... A B C),
`--rounds` times. A window is one `model.fit(epochs=1, shuffle=True)` over
`--steps` batches, timed from epoch begin to epoch end (the torch loop:
shuffled batches, the same number). Reported: the median samples/s over
the rounds, its spread, and ratios to the plain Keras row (same backend,
and the TensorFlow one). Every window also records the CPU time the rest
of the machine used meanwhile (`/proc/stat` busy time minus the child's),
since other work may share the 2 cores.

With `--vocab >= 200000` the rows cannot share memory, so each row runs
alone in its own child (no alternation) and its peak RSS is reported; the
parent kills a child if the machine's available memory drops below 1.5 GiB.

Usage:
    python benchmarks/train_throughput.py [--quick] [--backends tensorflow,jax]
        [--rows keras_deepfm,tffm_deepfm,...] [--vocab N] [--no-record]
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_FIELDS = 39
EMBEDDING_DIM = 16
HIDDEN = (400, 400, 400)
BATCH_SIZE = 4096
LEARNING_RATE = 1e-3
KERAS_ROWS = (
    "keras_deepfm",
    "tffm_deepfm",
    "tffm_deepfm_ema",
    "tffm_deepfm_train",
    "keras_fm",
    "tffm_fm",
)
TORCH_ROWS = ("torch_deepfm", "torch_fm")
BIG_VOCAB = 200_000
MIN_AVAILABLE_MB = 1536
RESULT = "@@RESULT "


# ---------------------------------------------------------------- data


def make_data(rows, vocab, seed=0):
    """Ids `(rows, 39)` int32 in `[0, vocab)` and random 0/1 labels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (rows, NUM_FIELDS), dtype=np.int32)
    labels = rng.integers(0, 2, rows).astype("float32")
    return ids, labels


# ---------------------------------------------------------------- Keras


def build_keras_rows(names, vocab):
    """Returns `{row: (model, x)}`; x is what `fit` gets for that row."""
    import keras

    import tffm
    from tffm.features import table_rows
    from tffm.train.defaults import table_l2_by_size

    ops = keras.ops

    class FMSquareOfSum(keras.layers.Layer):
        """`0.5 * sum_d((sum_f v)^2 - sum_f v^2)`: (B, F, D) -> (B, 1)."""

        def call(self, v):
            square_of_sum = ops.square(ops.sum(v, axis=1))  # (B, D)
            sum_of_square = ops.sum(ops.square(v), axis=1)  # (B, D)
            return 0.5 * ops.sum(
                square_of_sum - sum_of_square, axis=1, keepdims=True
            )  # (B, 1)

    class LinearSum(keras.layers.Layer):
        """`b + sum_f w_f`: (B, F, 1) -> (B, 1)."""

        def build(self, shape):
            self.bias = self.add_weight(shape=(1,), initializer="zeros")

        def call(self, w):
            return ops.sum(w, axis=1) + self.bias  # (B, 1)

    def plain(deep):
        init = keras.initializers.RandomNormal(stddev=0.01)
        ids = keras.Input((NUM_FIELDS,), dtype="int32", name="ids")
        offsets = np.arange(NUM_FIELDS, dtype="int32") * vocab
        rows = ids + offsets  # (B, F)
        num_rows = NUM_FIELDS * vocab
        v = keras.layers.Embedding(num_rows, EMBEDDING_DIM, init)(rows)
        w = keras.layers.Embedding(num_rows, 1, init)(rows)  # (B, F, 1)
        parts = [LinearSum()(w), FMSquareOfSum()(v)]
        if deep:
            x = keras.layers.Flatten()(v)  # (B, F * D)
            for units in HIDDEN:
                x = keras.layers.Dense(units, activation="relu")(x)
            parts.append(keras.layers.Dense(1)(x))
        logit = keras.layers.Add()(parts)
        out = keras.layers.Activation("sigmoid")(logit)
        return keras.Model(ids, out)

    features = [
        tffm.Categorical(f"c{i}", hash_bins=vocab - 1)
        for i in range(NUM_FIELDS)
    ]
    builders = {
        "keras_deepfm": lambda: plain(True),
        "keras_fm": lambda: plain(False),
        "tffm_deepfm": lambda: tffm.DeepFM(
            features, embedding_dim=EMBEDDING_DIM, hidden_units=list(HIDDEN)
        ),
        "tffm_deepfm_ema": lambda: tffm.DeepFM(
            features, embedding_dim=EMBEDDING_DIM, hidden_units=list(HIDDEN)
        ),
        "tffm_deepfm_train": lambda: tffm.DeepFM(
            features,
            embedding_dim=EMBEDDING_DIM,
            hidden_units=list(HIDDEN),
            table_l2=table_l2_by_size(table_rows(features)),
        ),
        "tffm_fm": lambda: tffm.FM(features, embedding_dim=EMBEDDING_DIM),
    }
    models = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = builders[name]()
        # Each row takes the default a user of it gets: Keras' Adam for the
        # plain models; tffm's (what `optimizer="adam"` means for a tffm
        # model: the same algorithm, embedding gradients summed per row)
        # and tffm's compile defaults for tffm's.
        adam = tffm.optimizers.Adam if name.startswith("tffm") else None
        # `_ema`: with the weight average `tffm train`'s binary DeepFM keeps
        # by default (`ema` 0.995; row-wise on tables of 1M+ rows).
        average = (
            dict(use_ema=True, ema_momentum=0.995)
            if name.endswith(("_ema", "_train"))
            else {}
        )
        model.compile(
            optimizer=(adam or keras.optimizers.Adam)(LEARNING_RATE, **average),
            loss="binary_crossentropy",
        )
        models[name] = model
    return models


class _EpochTimer:
    """Keras callback factory: records the time of the last epoch."""

    @staticmethod
    def make():
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds = time.perf_counter() - self.start

        return Timer()


def keras_inputs(name, ids):
    """One `(batch, 39)` array, or a dict of 39 arrays named by feature."""
    if name.startswith("tffm"):
        return {
            f"c{i}": np.ascontiguousarray(ids[:, i]) for i in range(NUM_FIELDS)
        }
    return ids


def keras_window(model, x, labels):
    timer = _EpochTimer.make()
    model.fit(
        x,
        labels,
        batch_size=BATCH_SIZE,
        epochs=1,
        shuffle=True,
        verbose=0,
        callbacks=[timer],
    )
    return timer.seconds


# ---------------------------------------------------------------- torch


def build_torch_rows(names, vocab):
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)

    class TorchDeepFM(nn.Module):
        def __init__(self, deep):
            super().__init__()
            rows = NUM_FIELDS * vocab
            self.v = nn.Embedding(rows, EMBEDDING_DIM)
            self.w = nn.Embedding(rows, 1)
            nn.init.normal_(self.v.weight, std=0.01)
            nn.init.normal_(self.w.weight, std=0.01)
            self.bias = nn.Parameter(torch.zeros(1))
            self.register_buffer(
                "offsets", torch.arange(NUM_FIELDS, dtype=torch.int64) * vocab
            )
            self.mlp = None
            if deep:
                layers, width = [], NUM_FIELDS * EMBEDDING_DIM
                for units in HIDDEN:
                    layers += [nn.Linear(width, units), nn.ReLU()]
                    width = units
                layers.append(nn.Linear(width, 1))
                self.mlp = nn.Sequential(*layers)

        def forward(self, ids):
            rows = ids.long() + self.offsets  # (B, F)
            v = self.v(rows)  # (B, F, D)
            w = self.w(rows).squeeze(-1)  # (B, F)
            fm = 0.5 * (v.sum(1).square() - v.square().sum(1))  # (B, D)
            logit = w.sum(1, keepdim=True) + self.bias + fm.sum(1, True)
            if self.mlp is not None:
                logit = logit + self.mlp(v.flatten(1))  # (B, 1)
            return logit

    models = {}
    for name in names:
        model = TorchDeepFM(deep=name == "torch_deepfm")
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        models[name] = (model, optimizer)
    return models


def torch_window(pair, ids, labels, seed):
    import torch

    model, optimizer = pair
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = np.random.default_rng(seed).permutation(len(ids))
    start = time.perf_counter()
    for begin in range(0, len(ids), BATCH_SIZE):
        batch = order[begin : begin + BATCH_SIZE]
        x = torch.from_numpy(ids[batch])
        y = torch.from_numpy(labels[batch])[:, None]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


# ---------------------------------------------------------------- child


def child(args):
    """Serves `{"row": name}` lines on stdin with one timed window each."""
    names = args.rows.split(",")
    ids, labels = make_data(args.steps * BATCH_SIZE, args.vocab)
    if args.backend == "torch":
        import torch

        models = build_torch_rows(names, args.vocab)
        versions = {"torch": torch.__version__}
    else:
        import keras

        models = build_keras_rows(names, args.vocab)
        inputs = {name: keras_inputs(name, ids) for name in names}
        versions = {"keras": keras.__version__}
        if args.backend == "tensorflow":
            import tensorflow as tf

            versions["tensorflow"] = tf.__version__
        else:
            import jax

            versions["jax"] = jax.__version__
    calls = 0

    def window(name):
        nonlocal calls
        calls += 1
        cpu0 = time.process_time()
        if args.backend == "torch":
            seconds = torch_window(models[name], ids, labels, seed=calls)
        else:
            seconds = keras_window(models[name], inputs[name], labels)
        return {
            "row": name,
            "seconds": seconds,
            "samples": len(ids),
            "cpu": time.process_time() - cpu0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024,
        }

    for name in names:  # warm-up: tracing, compilation, first allocations
        for _ in range(args.warmup):
            window(name)
    _send({"ready": True, "versions": versions})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        _send(window(request["row"]))


def _send(obj):
    sys.stdout.write(RESULT + json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- parent


class Child:
    def __init__(self, backend, rows, args):
        env = dict(os.environ)
        if backend != "torch":
            env["KERAS_BACKEND"] = backend
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--backend",
            backend,
            "--rows",
            ",".join(rows),
            "--vocab",
            str(args.vocab),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        self.backend = backend
        self.log = open(os.path.join(args.logdir, f"{backend}.log"), "w")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.watch = _MemoryWatch(self.proc)
        self.versions = self._read()["versions"]

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT) :])
        code = self.proc.wait()
        self.watch.stop()
        why = (
            " (killed: the machine ran low on memory)"
            if self.watch.killed
            else ""
        )
        raise RuntimeError(
            f"{self.backend} child died (exit {code}){why}; see {self.log.name}"
        )

    def run(self, row):
        busy0, total0 = _cpu_jiffies()
        self.proc.stdin.write(json.dumps({"row": row}) + "\n")
        self.proc.stdin.flush()
        result = self._read()
        busy1, total1 = _cpu_jiffies()
        # Cores the rest of the machine kept busy during the window.
        hz = os.sysconf("SC_CLK_TCK")
        wall = result["seconds"]
        other = (busy1 - busy0) / hz - result["cpu"]
        result["other_cores"] = max(0.0, other / max(wall, 1e-9))
        result["own_cores"] = result["cpu"] / max(wall, 1e-9)
        return result

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait()
        self.watch.stop()
        self.log.close()


class _MemoryWatch:
    """Kills the child if the machine runs short of memory; tracks RSS."""

    def __init__(self, proc):
        self.proc, self.peak_mb, self.killed = proc, 0.0, False
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self._stop.wait(0.5) and self.proc.poll() is None:
            self.peak_mb = max(self.peak_mb, _rss_mb(self.proc.pid))
            if _available_mb() < MIN_AVAILABLE_MB:
                self.killed = True
                self.proc.kill()

    def stop(self):
        self._stop.set()


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def _cpu_jiffies():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def plan(args):
    """Returns `[(backend, rows)]`, one child each."""
    wanted = args.rows.split(",") if args.rows else None
    children = []
    for backend in args.backends.split(","):
        rows = [r for r in KERAS_ROWS if wanted is None or r in wanted]
        if rows:
            children.append((backend, rows))
    try:
        import importlib.util

        has_torch = importlib.util.find_spec("torch") is not None
    except ValueError:
        has_torch = False
    torch_rows = [r for r in TORCH_ROWS if wanted is None or r in wanted]
    if torch_rows and has_torch:
        children.append(("torch", torch_rows))
    elif torch_rows:
        print("torch is not installed: skipping the torch rows")
    return children


def run_alternating(args, children_plan):
    children = [Child(b, rows, args) for b, rows in children_plan]
    results = {}
    try:
        for _ in range(args.rounds):
            for child_, (backend, rows) in zip(
                children, children_plan, strict=True
            ):
                for row in rows:
                    results.setdefault((backend, row), []).append(
                        child_.run(row)
                    )
    finally:
        for child_ in children:
            child_.close()
    versions = {}
    for child_ in children:
        versions.update(child_.versions)
    return results, versions, {}


def run_isolated(args, children_plan):
    """One child per row, one after the other (large vocabularies)."""
    results, versions, peaks = {}, {}, {}
    for backend, rows in children_plan:
        for row in rows:
            print(f"  {backend} {row} ...", flush=True)
            try:
                child_ = Child(backend, [row], args)
                try:
                    for _ in range(args.rounds):
                        results.setdefault((backend, row), []).append(
                            child_.run(row)
                        )
                finally:
                    child_.close()
                versions.update(child_.versions)
                peaks[(backend, row)] = child_.watch.peak_mb
            except RuntimeError as error:
                print(f"  {backend} {row} failed: {error}")
                results[(backend, row)] = []
    return results, versions, peaks


def table(results, peaks, args):
    def median_rate(key):
        runs = results.get(key) or []
        rates = [r["samples"] / r["seconds"] for r in runs]
        return statistics.median(rates) if rates else None

    lines = [
        "| row | backend | samples/s (median) | min - max | ms/step "
        "| vs plain Keras, same backend | vs plain Keras TF | other load "
        "(cores) | peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (backend, row), runs in results.items():
        rate = median_rate((backend, row))
        if rate is None:
            lines.append(f"| {row} | {backend} | failed | | | | | | |")
            continue
        rates = [r["samples"] / r["seconds"] for r in runs]
        kind = row.split("_")[1]
        base_same = median_rate((backend, f"keras_{kind}"))
        base_tf = median_rate(("tensorflow", f"keras_{kind}"))
        other = statistics.median(r["other_cores"] for r in runs)
        peak = peaks.get((backend, row)) or max(r["peak_rss_mb"] for r in runs)
        lines.append(
            f"| {row} | {backend} | {rate:,.0f} | {min(rates):,.0f} - "
            f"{max(rates):,.0f} | {1000 * BATCH_SIZE / rate:.1f} | "
            f"{_ratio(rate, base_same if backend != 'torch' else None)} | "
            f"{_ratio(rate, base_tf)} | {other:.2f} | {peak / 1024:.1f} GB |"
        )
    return "\n".join(lines)


def _ratio(rate, base):
    return f"{rate / base:.2f}x" if base else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--rows", default=None, help="comma-separated rows")
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--logdir", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 4 if args.quick else 30
        if args.vocab >= BIG_VOCAB and not args.quick:
            args.steps = 10
    if args.child:
        return child(args)
    if args.logdir is None:
        args.logdir = os.path.join("/tmp", f"train_throughput.{os.getpid()}")
    os.makedirs(args.logdir, exist_ok=True)

    children_plan = plan(args)
    load_before = os.getloadavg()
    started = time.time()
    print(
        f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}; children logs in {args.logdir}",
        flush=True,
    )
    if args.vocab >= BIG_VOCAB:
        results, versions, peaks = run_isolated(args, children_plan)
    else:
        results, versions, peaks = run_alternating(args, children_plan)
    load_after = os.getloadavg()
    minutes = (time.time() - started) / 60
    import tffm  # noqa: F401  (version of the checkout under test)

    versions["numpy"] = np.__version__
    mode = (
        "each row alone in its own process"
        if args.vocab >= BIG_VOCAB
        else "rows alternating across processes"
    )
    header = (
        f"### train_throughput.py, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, "
        f"{os.cpu_count()} cores, CPU only"
        f"{', --quick' if args.quick else ''}\n\n"
        f"{NUM_FIELDS} fields x {args.vocab:,} ids, embedding "
        f"{EMBEDDING_DIM}, DNN {'-'.join(map(str, HIDDEN))}, Adam, batch "
        f"{BATCH_SIZE:,}; {mode}; {args.steps} steps per window, "
        f"{args.warmup} warm-up window(s), median of {args.rounds} windows. "
        f"Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + ". Load average (1/5/15 min) before: "
        + " / ".join(f"{v:.2f}" for v in load_before)
        + ", after: "
        + " / ".join(f"{v:.2f}" for v in load_after)
        + f"; {minutes:.1f} min. 'other load' is the median number of cores "
        "the rest of the machine kept busy during a row's windows.\n"
    )
    text = header + "\n" + table(results, peaks, args) + "\n"
    print()
    print(text)
    if not args.no_record:
        record_section("train_throughput", "\n\n" + text)


if __name__ == "__main__":
    main()
