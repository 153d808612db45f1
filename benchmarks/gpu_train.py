"""DeepFM training throughput on a GPU: tffm (JAX) vs plain Keras vs torch.

Issue #9 "GPU": batch 65,536, 39 categorical fields x 10,000 ids,
embedding 16, MLP 400-400-400, Adam (lr 1e-3), in one run, each in three
precisions: fp32 (true fp32 matmuls), tf32 (fp32 with TF32 matmuls, in
both frameworks) and bf16 (`mixed_bfloat16`; `torch.autocast`):
- `tffm.DeepFM` (Keras, JAX backend) in a jitted loop over
  `model.stateless_call` + `optimizer.stateless_apply`;
- the same model through `model.fit` on device-resident arrays, which on
  JAX takes `tffm.train.device_fit` (rows kept on the device, shuffled
  there), with `shuffle=True` and `shuffle=False`; each window is one
  `fit(epochs=1)` call, timed whole;
- a plain Keras DeepFM (one `(batch, 39)` input, two `Embedding`s with
  per-field offsets, square-of-sum FM), same loop;
- a PyTorch DeepFM of the same shapes, `torch.compile`d, fused Adam.
The data stays on the device: ids and labels are drawn there once
(`jax.random`; labels from a planted per-id logit, so the losses say
whether each model learns), each epoch is a device permutation, and each
step gathers its batch on the device (the torch rows share the same
arrays through DLPack). Rows alternate window by window; each figure is
the median over windows of samples/s, synchronized at window ends.

Runs without TensorFlow (it is blocked: an import fails), as on the GPU
machine (Python 3.12, JAX, PyTorch; Keras from wheels; the project on
PYTHONPATH). `--cpu` runs the same rows at shapes scaled to a small CPU
(batch 2,048, MLP 128-128-128, fp32), for the ratios; `--quick` runs
everything at a tiny batch, to test.

    python benchmarks/gpu_train.py                  # the GPU run
    python benchmarks/gpu_train.py --cpu            # the CPU ratios
    python benchmarks/gpu_train.py --quick --no-record   # a CPU check
"""

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
import time

from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
FIELDS = 39
VOCAB = 10_000
DIM = 16
HIDDEN = (400, 400, 400)
LEARNING_RATE = 1e-3
# JAX's and torch's fp32 matmul precision of each row precision.
MATMUL = {"fp32": "highest", "tf32": "tensorfloat32", "bf16": "highest"}
TORCH_MATMUL = {"fp32": "highest", "tf32": "high", "bf16": "highest"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--epoch-batches", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="per window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="windows")
    parser.add_argument(
        "--rows",
        default="tffm,tffm_fit,keras,torch",
        help="comma list of tffm, tffm_fit, keras, torch",
    )
    parser.add_argument(
        "--precisions",
        default="fp32,tf32,bf16",
        help="comma list of fp32, tf32 (fp32 with TF32 matmuls), bf16",
    )
    parser.add_argument(
        "--hidden", default=",".join(map(str, HIDDEN)), help="MLP widths"
    )
    parser.add_argument("--cpu", action="store_true", help="CPU shapes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--allow-tensorflow", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.cpu:
        args.batch, args.epoch_batches = 2048, 16
        args.steps, args.windows = 8, 5
        args.hidden, args.precisions = "128,128,128", "fp32"
    if args.quick:
        args.batch, args.epoch_batches = 1024, 4
        args.steps, args.windows = 2, 2
    args.hidden = tuple(int(h) for h in args.hidden.split(","))
    return args


def main():
    args = parse_args()
    if not args.allow_tensorflow:
        sys.modules["tensorflow"] = None  # any `import tensorflow` fails
    os.environ["KERAS_BACKEND"] = "jax"
    # Leave GPU memory for torch in the same process.
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    import jax
    import keras

    device = jax.devices()[0]
    if device.platform != "gpu" and not (args.quick or args.cpu):
        raise SystemExit(
            f"No GPU (JAX runs on {device.platform}); use --cpu or --quick."
        )
    data = Data(args.batch * args.epoch_batches, seed=0)
    kinds = set(args.rows.split(","))
    rows = []
    for precision in args.precisions.split(","):
        if "tffm" in kinds:
            rows.append(
                KerasLoop(
                    "tffm.DeepFM, jitted loop",
                    precision,
                    tffm_model(precision, args.hidden),
                    data,
                    args.batch,
                )
            )
        if "tffm_fit" in kinds:
            for shuffle in (True, False):
                rows.append(KerasFit(precision, shuffle, data, args))
        if "keras" in kinds:
            rows.append(
                KerasLoop(
                    "plain Keras DeepFM, jitted loop",
                    precision,
                    keras_model(precision, args.hidden),
                    data,
                    args.batch,
                )
            )
        if "torch" in kinds:
            rows.append(TorchRow(precision, data, args))
    times = {row.name: [] for row in rows}
    for window in range(args.warmup + args.windows):
        for row in rows:  # alternate: load changes hit every row alike
            with jax.default_matmul_precision(MATMUL[row.precision]):
                seconds = row.run(args.steps)
            if window >= args.warmup:
                times[row.name].append(seconds)
    report(args, rows, times, device, keras.__version__)


class Data:
    """Ids, labels and per-epoch permutations, all on the device."""

    def __init__(self, rows, seed):
        import jax
        import jax.numpy as jnp

        k_ids, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
        self.rows = rows
        self.ids = jax.random.randint(
            k_ids, (rows, FIELDS), 0, VOCAB, dtype=jnp.int32
        )  # (N, F): per-field ids (0 is tffm's "missing" id: still an id)
        weights = jax.random.normal(k_w, (FIELDS, VOCAB)) * 0.5
        logit = weights[jnp.arange(FIELDS), self.ids].sum(axis=1)  # (N,)
        logit = logit - logit.mean()
        self.labels = jax.random.bernoulli(k_y, jax.nn.sigmoid(logit)).astype(
            jnp.float32
        )  # (N,)
        self.seed = seed

    def permutation(self, epoch):
        import jax

        key = jax.random.fold_in(jax.random.key(self.seed + 1), epoch)
        return jax.random.permutation(key, self.rows)  # on the device


def tffm_model(precision, hidden):
    import tffm

    features = [
        tffm.Categorical(f"C{i}", hash_bins=VOCAB - 1)  # ids 0 .. VOCAB-1
        for i in range(1, FIELDS + 1)
    ]
    return tffm.DeepFM(
        features,
        embedding_dim=DIM,
        hidden_units=hidden,
        dtype="mixed_bfloat16" if precision == "bf16" else None,
    )


def keras_model(precision, hidden):
    """Plain Keras 3 DeepFM: one `(batch, 39)` input, two tables."""
    import keras
    from keras import ops

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(
        "mixed_bfloat16" if precision == "bf16" else "float32"
    )
    try:
        ids = keras.Input((FIELDS,), dtype="int32")
        offsets = ops.arange(FIELDS, dtype="int32") * VOCAB
        rows = keras.layers.Lambda(lambda x: x + offsets)(ids)
        vectors = keras.layers.Embedding(FIELDS * VOCAB, DIM)(rows)  # (B,F,D)
        linear = keras.layers.Embedding(FIELDS * VOCAB, 1)(rows)  # (B,F,1)

        def fm(v):
            total = ops.sum(v, axis=1)  # (B, F, D) -> (B, D)
            square = ops.sum(v * v, axis=1)  # (B, F, D) -> (B, D)
            return 0.5 * ops.sum(total * total - square, axis=1, keepdims=True)

        deep = keras.layers.Flatten()(vectors)  # (B, F * D)
        for units in hidden:
            deep = keras.layers.Dense(units, activation="relu")(deep)
        deep = keras.layers.Dense(1)(deep)  # (B, 1)
        first = keras.layers.Lambda(lambda x: ops.sum(x, axis=1))(linear)
        logit = keras.layers.Add()(
            [first, keras.layers.Lambda(fm)(vectors), deep]
        )
        probability = keras.layers.Activation("sigmoid", dtype="float32")(logit)
        return keras.Model(ids, probability)
    finally:
        keras.config.set_dtype_policy(previous)


class KerasLoop:
    """A jitted step over `stateless_call`, batches gathered on device."""

    def __init__(self, label, precision, model, data, batch):
        import jax
        import keras

        self.name = f"{label} ({precision})"
        self.label, self.precision = label, precision
        self.data, self.batch = data, batch
        self.per_epoch = data.rows // batch
        self.step_index, self.epoch = 0, 0
        self.perm = data.permutation(0)
        optimizer = keras.optimizers.Adam(LEARNING_RATE)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.BinaryCrossentropy()
        named = isinstance(model.input, dict)

        def to_inputs(x):  # (B, F) -> the model's input
            if not named:
                return x
            return {f"C{i + 1}": x[:, i] for i in range(FIELDS)}

        def loss_and_state(trainable, non_trainable, x, y):
            probability, non_trainable = model.stateless_call(
                trainable, non_trainable, to_inputs(x), training=True
            )
            return loss_fn(y[:, None], probability), non_trainable

        grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

        @functools.partial(jax.jit, donate_argnums=0)
        def step(state, ids, labels, perm, i):
            trainable, non_trainable, slots = state
            index = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
            x, y = ids[index], labels[index]  # gathered on the device
            (loss, non_trainable), grads = grad_fn(
                trainable, non_trainable, x, y
            )
            trainable, slots = optimizer.stateless_apply(
                slots, grads, trainable
            )
            return (trainable, non_trainable, slots), loss

        self.step = step
        self.state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )
        self.loss = float("nan")

    def run(self, steps):
        start = time.perf_counter()
        loss = None
        for _ in range(steps):
            if self.step_index == self.per_epoch:
                self.epoch += 1
                self.perm = self.data.permutation(self.epoch)
                self.step_index = 0
            self.state, loss = self.step(
                self.state,
                self.data.ids,
                self.data.labels,
                self.perm,
                self.step_index,
            )
            self.step_index += 1
        loss.block_until_ready()
        self.loss = float(loss)
        return time.perf_counter() - start


class KerasFit:
    """`tffm.DeepFM` trained by `model.fit` on device-resident arrays."""

    def __init__(self, precision, shuffle, data, args):
        import keras

        self.name = f"tffm.DeepFM, model.fit, shuffle={shuffle} ({precision})"
        self.precision = precision
        self.shuffle = shuffle
        self.model = tffm_model(precision, args.hidden)
        self.model.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE),
            loss="binary_crossentropy",
            jit_compile=True,
        )
        rows = args.steps * args.batch  # one window = one epoch of these
        self.x = {f"C{i + 1}": data.ids[:rows, i] for i in range(FIELDS)}
        self.y = data.labels[:rows]
        self.batch = args.batch
        self.steps = args.steps
        self.loss = float("nan")

    def run(self, steps):
        if steps != self.steps:
            raise ValueError("model.fit rows run whole windows only.")
        start = time.perf_counter()
        history = self.model.fit(
            self.x,
            self.y,
            batch_size=self.batch,
            epochs=1,
            shuffle=self.shuffle,
            verbose=0,
        )
        self.loss = history.history["loss"][-1]
        return time.perf_counter() - start


class TorchRow:
    """The same DeepFM in PyTorch, `torch.compile`d, data on the device."""

    def __init__(self, precision, data, args):
        import torch

        self.name = f"PyTorch DeepFM, torch.compile ({precision})"
        self.precision = precision
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(0)
        self.ids = torch.from_dlpack(data.ids).to(self.device)  # (N, F)
        self.labels = torch.from_dlpack(data.labels).to(self.device)  # (N,)
        self.rows, self.batch = data.rows, args.batch
        self.per_epoch = data.rows // args.batch
        self.step_index = 0
        self.generator = torch.Generator(device=self.device).manual_seed(1)
        self.perm = self._permutation()
        model = _torch_deepfm(torch, args.hidden).to(self.device)
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=LEARNING_RATE,
            fused=self.device == "cuda",
        )
        self.model = torch.compile(model)
        self.bf16 = precision == "bf16"
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        self.loss = float("nan")

    def _permutation(self):
        return self.torch.randperm(
            self.rows, device=self.device, generator=self.generator
        )

    def _step(self, x, y):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device, dtype=torch.bfloat16, enabled=self.bf16
        ):
            logit = self.model(x)  # (B, 1)
        loss = self.loss_fn(logit.float()[:, 0], y)
        loss.backward()
        self.optimizer.step()
        return loss

    def run(self, steps):
        torch = self.torch
        torch.set_float32_matmul_precision(TORCH_MATMUL[self.precision])
        if self.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = None
        for _ in range(steps):
            if self.step_index == self.per_epoch:
                self.perm = self._permutation()
                self.step_index = 0
            begin = self.step_index * self.batch
            index = self.perm[begin : begin + self.batch]
            loss = self._step(self.ids[index], self.labels[index])
            self.step_index += 1
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.loss = float(loss.detach())
        return time.perf_counter() - start


def _torch_deepfm(torch, hidden):
    nn = torch.nn

    class DeepFM(nn.Module):
        def __init__(self):
            super().__init__()
            self.vectors = nn.Embedding(FIELDS * VOCAB, DIM)
            self.linear = nn.Embedding(FIELDS * VOCAB, 1)
            nn.init.normal_(self.vectors.weight, std=0.05)
            nn.init.zeros_(self.linear.weight)
            self.bias = nn.Parameter(torch.zeros(1))
            layers, width = [], FIELDS * DIM
            for units in hidden:
                layers += [nn.Linear(width, units), nn.ReLU()]
                width = units
            self.deep = nn.Sequential(*layers, nn.Linear(width, 1))
            self.register_buffer(
                "offsets", torch.arange(FIELDS, dtype=torch.int32) * VOCAB
            )

        def forward(self, ids):  # (B, F) int32 -> (B, 1) logit
            rows = ids + self.offsets
            v = self.vectors(rows)  # (B, F, D)
            total = v.sum(dim=1)  # (B, D)
            fm = 0.5 * (total * total - (v * v).sum(dim=1)).sum(
                dim=1, keepdim=True
            )  # (B, 1)
            first = self.linear(rows).sum(dim=1) + self.bias  # (B, 1)
            return first + fm + self.deep(v.flatten(1))

    return DeepFM()


def report(args, rows, times, device, keras_version):
    import jax

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "-"
    medians = {}
    table = [
        "| row | samples/s (median) | min - max | ms/step | vs jitted loop, "
        "same precision | vs torch.compile, same precision | loss, last "
        "window |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        rates = [args.batch * args.steps / t for t in times[row.name]]
        medians[row.name] = statistics.median(rates)
    for row in rows:
        rates = [args.batch * args.steps / t for t in times[row.name]]
        median = medians[row.name]
        precision = row.name.rsplit("(", 1)[1].rstrip(")")
        ratios = []
        for reference in (
            f"tffm.DeepFM, jitted loop ({precision})",
            f"PyTorch DeepFM, torch.compile ({precision})",
        ):
            base = medians.get(reference)
            ratios.append(f"{median / base:.2f}x" if base else "-")
        table.append(
            f"| {row.name} | {median:,.0f} | {min(rates):,.0f} - "
            f"{max(rates):,.0f} | {args.batch / median * 1e3:.2f} | "
            f"{ratios[0]} | {ratios[1]} | {row.loss:.4f} |"
        )
    load = os.getloadavg()
    header = (
        f"\n### gpu_train.py{' --cpu' if args.cpu else ''}"
        f"{' --quick' if args.quick else ''}, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {device.device_kind} "
        f"({device.platform}), {os.cpu_count()} CPU cores\n\n"
        f"DeepFM, {FIELDS} fields x {VOCAB:,} ids, embedding {DIM}, MLP "
        f"{'-'.join(map(str, args.hidden))}, Adam {LEARNING_RATE:g}; batch "
        f"{args.batch:,}, an epoch of {args.epoch_batches} batches drawn on "
        f"the device, reshuffled there each epoch; {args.steps} steps per "
        f"window, {args.warmup} warm-up window(s), median of "
        f"{args.windows}; precisions {args.precisions} (tf32: fp32 with "
        "TF32 matmuls). TensorFlow "
        f"{'allowed' if args.allow_tensorflow else 'blocked (not imported)'}."
        f" Versions: Python {platform.python_version()}, jax "
        f"{jax.__version__}, keras {keras_version}, torch {torch_version}. "
        f"Load average at the end: {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f}.\n"
    )
    text = header + "\n" + "\n".join(table) + "\n"
    print(text)
    if not args.no_record:
        record_section("gpu_train", text)


if __name__ == "__main__":
    main()
