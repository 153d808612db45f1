"""Training past one device: strategies, batch and learning-rate scaling.

`plan(config)` turns `TrainConfig.distribution` into a `Plan`: the
`tf.distribute` strategy (TensorFlow backend) or `keras.distribution`
(JAX backend) to build the model under, the global batch and learning
rate, and how each worker reads its part of the input.

- `mirrored`: `tf.distribute.MirroredStrategy` over the host's GPUs (its
  logical CPU devices when it has none): one copy of the model per device,
  gradients summed every step.
- `multi-worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  hosts of `TF_CONFIG`; each worker runs the same command.
- `parameter-server`: `tf.distribute.ParameterServerStrategy` over the
  `chief`, `worker` and `ps` tasks of `TF_CONFIG`: variables on the ps
  tasks, asynchronous steps on the workers (`tffm.parameter_server`).
- `data-parallel`: `keras.distribution.DataParallel` over the JAX devices.
- `model-parallel`: `keras.distribution.ModelParallel` over the JAX
  devices, the fused embedding table split by rows (`layout_map`).

Batch and learning rate (`batch_scaling`): data-parallel replicas each
compute the mean loss over their part of a step's rows and the gradients
are summed over replicas and divided by their number, so one step over a
global batch of `B` rows is the step one device takes on those `B` rows.
With `global` (the default) `batch_size` is that global batch and nothing
else changes: the same run on more devices, each with `B / N` rows. With
`linear` or `sqrt`, `batch_size` is per replica, so the global batch is
`N * B`, and the learning rate is multiplied by `N` (Goyal et al., 2017:
for SGD, `N` times fewer steps of `N` times the rows) or `sqrt(N)` (Hoffer
et al., 2017; the usual rule for Adam, whose step size does not grow with
the gradient's scale).
"""

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from tffm.config import TrainConfig

_TF = ("mirrored", "multi-worker", "parameter-server")
_JAX = ("data-parallel", "model-parallel")
# Whole files go to workers when the heaviest worker's bytes are at most
# this much over the lightest's (else every N-th line: see `shard_files`).
FILE_IMBALANCE = 0.1


@dataclasses.dataclass
class Plan:
    """Where and how one process trains.

    Attributes:
        distribution: `TrainConfig.distribution`.
        strategy: the `tf.distribute.Strategy`, or None.
        layout: the `keras.distribution.Distribution` (JAX), or None.
        num_replicas: model replicas taking part in each step.
        num_workers: processes reading input (one input pipeline each).
        worker: this process's index among them.
        is_chief: whether this process writes the outputs.
        batch_size: rows of one step over all replicas (global batch).
        learning_rate: the learning rate, scaled.
        note: one line: replicas, batch and learning rate, for the log.
        serves: whether this process is a parameter-server cluster's
            `worker` or `ps` task, which serves the chief (`serve`)
            instead of training.
    """

    distribution: str
    strategy: Any
    layout: Any
    num_replicas: int
    num_workers: int
    worker: int
    is_chief: bool
    batch_size: int
    learning_rate: float
    note: str
    serves: bool = False

    def serve(self) -> dict[str, Any]:
        """A `worker` or `ps` task: serves the chief until it is gone."""
        from tffm import parameter_server

        return parameter_server.serve()

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Variables created inside are distributed as the plan says.

        `parameter-server`: none are; the model built here is the chief's,
        which `tffm.parameter_server.fit` copies onto the ps tasks.
        """
        if self.distribution == "parameter-server":
            yield
        elif self.strategy is not None:
            with self.strategy.scope():
                yield
        elif self.layout is not None:
            import keras

            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(self.layout)
            try:
                yield
            finally:
                keras.distribution.set_distribution(previous)
        else:
            yield

    @property
    def rows_per_step(self) -> int:
        """Rows one step reads from this process's input pipeline."""
        return self.batch_size // self.num_workers

    def training_input(
        self,
        files: Sequence[str],
        build: Callable[[list[str], int, tuple[int, int] | None], Any],
    ) -> Any:
        """The training dataset, each worker reading its part of `files`.

        Args:
            files: the training files (globs resolved).
            build: `build(files, batch_size, record_shard)` returns an
                encoded `(features, label)` dataset of `batch_size`-line
                batches of `files`, reading only every `count`-th line
                from the `index`-th when `record_shard=(count, index)`.

        Returns:
            A `tf.data.Dataset`, a distributed dataset for the TensorFlow
            strategies, or a `tffm.parameter_server.TrainingInput`.
        """
        if self.distribution == "parameter-server":
            from tffm import parameter_server

            # The worker's index is a tensor there: every N-th line.
            return parameter_server.TrainingInput(
                strategy=self.strategy,
                num_workers=self.num_workers,
                batch_size=self.batch_size,
                build=lambda batch, shard: build(list(files), batch, shard),
            )
        if self.strategy is None:
            ds = build(list(files), self.batch_size, None)
            if self.distribution == "data-parallel":
                ds = pad_batches(ds, self.num_replicas)
            return ds
        global_batch = self.batch_size

        def per_pipeline(context: Any) -> Any:
            batch = context.get_per_replica_batch_size(global_batch)
            mine, record_shard = shard_files(
                files, context.num_input_pipelines, context.input_pipeline_id
            )
            return build(mine, batch, record_shard)

        return self.strategy.distribute_datasets_from_function(per_pipeline)

    def prepare(self, model: Any) -> None:
        """Makes a compiled model's updates independent of the replicas.

        On the TensorFlow backend, with or without a strategy, duplicate
        rows of sparse gradients are summed before Keras' own optimizers
        see them (`merge_sparse`), so Adam's update is the same on one
        device and on several, and the same as on JAX and torch. Under
        `mirrored` and `multi-worker`, a replica whose input has run out
        trains on one row of weight 0 (`fill_empty_batches`).
        """
        import keras

        if keras.backend.backend() == "tensorflow" and model.optimizer:
            merge_sparse(model.optimizer)
        if self.distribution in ("mirrored", "multi-worker"):
            fill_empty_batches(model)
            # Keras 3 would XLA-compile the whole distributed step, which
            # reads every replica's variables from one device: XLA refuses
            # ("Trying to access resource ... located in device CPU:1").
            model.jit_compile = False

    def check(self, features: Sequence[Any]) -> None:
        """Fails early when `model-parallel` cannot split the table."""
        if self.distribution != "model-parallel":
            return
        from tffm.features import table_rows

        rows = table_rows(features)
        devices = int(self.layout.device_mesh.shape[-1])
        if rows % devices:
            raise ValueError(
                f"model-parallel splits the embedding table's {rows} rows "
                f"over {devices} devices: JAX needs a multiple of {devices}."
                " Change a hash_bins or max_tokens by the difference."
            )

    def validation_input(self, dataset: Any) -> Any:
        """Validation data for `fit`: workers split its batches."""
        if self.distribution == "multi-worker":
            import tensorflow as tf

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA
            )
            return dataset.with_options(options)
        if self.distribution == "data-parallel":
            return pad_batches(dataset, self.num_replicas)
        return dataset


def plan(config: TrainConfig) -> Plan:
    """The `Plan` of `config.distribution` on this process.

    Create it first (before any TensorFlow op runs): multi-worker
    collectives must be configured at program start.
    """
    import keras

    name = config.distribution
    backend = keras.backend.backend()
    if name in _TF and backend != "tensorflow":
        raise ValueError(
            f"distribution={name!r} is a tf.distribute strategy: it needs "
            f"KERAS_BACKEND=tensorflow (the backend is {backend!r}). On "
            "JAX use data-parallel or model-parallel."
        )
    if name in _JAX and backend != "jax":
        raise ValueError(
            f"distribution={name!r} is a keras.distribution layout: it "
            f"needs KERAS_BACKEND=jax (the backend is {backend!r}). On "
            "TensorFlow use mirrored or multi-worker."
        )
    strategy = layout = None
    workers, worker, chief = 1, 0, True
    if name == "mirrored":
        strategy = mirrored_strategy()
    elif name == "multi-worker":
        strategy = multi_worker_strategy()
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
        worker = _worker_index(resolver.task_type, resolver.task_id, spec)
        chief = worker == 0
    elif name == "parameter-server":
        return _parameter_server_plan(config)
    elif name in _JAX:
        layout = jax_distribution(name)
    replicas = _replicas(strategy, layout)
    batch, rate, note = scale(config, replicas)
    if name in ("mirrored", "multi-worker") and batch % replicas:
        raise ValueError(
            f"the global batch ({batch}) must split evenly over the "
            f"{replicas} replicas: choose a batch_size divisible by "
            f"{replicas}, or batch_scaling linear / sqrt (per replica)."
        )
    if name in ("mirrored", "multi-worker") and (batch // workers) % (
        replicas // workers
    ):
        raise ValueError(f"batch {batch} does not split over {workers} hosts")
    return Plan(
        distribution=name,
        strategy=strategy,
        layout=layout,
        num_replicas=replicas,
        num_workers=workers,
        worker=worker,
        is_chief=chief,
        batch_size=batch,
        learning_rate=rate,
        note=f"{name}: {note}",
    )


def _parameter_server_plan(config: TrainConfig) -> Plan:
    """The chief trains (`tffm.parameter_server.fit`); the others serve.

    Steps are asynchronous, each one worker's batch: `batch_size` is that
    batch, and scaling (`batch_scaling`) applies to the replicas inside a
    worker (its GPUs), not to the workers.
    """
    from tffm import parameter_server

    if config.format in ("parquet", "encoded"):
        raise ValueError(
            f"distribution='parameter-server' cannot read format="
            f"{config.format!r}: its reader is a Python generator "
            "(tf.data.Dataset.from_generator), which runs in the process "
            "that builds it, not on a worker. Use csv, criteo or libsvm "
            "files."
        )
    task_type, task_id = parameter_server.cluster_task()
    workers = parameter_server.num_workers()
    if task_type != "chief":
        return Plan(
            distribution="parameter-server",
            strategy=None,
            layout=None,
            num_replicas=1,
            num_workers=workers,
            worker=task_id,
            is_chief=False,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            note=f"parameter-server: {task_type} {task_id} serves the chief",
            serves=True,
        )
    strategy = parameter_server.strategy()
    replicas = int(strategy.num_replicas_in_sync)
    batch, rate, note = scale(config, replicas)
    return Plan(
        distribution="parameter-server",
        strategy=strategy,
        layout=None,
        num_replicas=replicas,
        num_workers=workers,
        worker=0,
        is_chief=True,
        batch_size=batch,
        learning_rate=rate,
        note=(
            f"parameter-server: {workers} workers, asynchronous steps of "
            f"one worker's batch each; per worker {note}"
        ),
    )


def scale(config: TrainConfig, replicas: int) -> tuple[int, float, str]:
    """`(global_batch, learning_rate, note)` for `replicas` replicas."""
    batch, rate = config.batch_size, config.learning_rate
    if config.batch_scaling == "global" or replicas == 1:
        per = f"{batch / replicas:g}" if replicas > 1 else str(batch)
        return (
            batch,
            rate,
            f"{replicas} replica(s), global batch {batch} ({per} per "
            f"replica), learning rate {rate:g}",
        )
    factor = replicas if config.batch_scaling == "linear" else replicas**0.5
    return (
        batch * replicas,
        rate * factor,
        f"{replicas} replicas x {batch} rows = global batch "
        f"{batch * replicas}, learning rate {rate:g} x {factor:g} "
        f"({config.batch_scaling} scaling) = {rate * factor:g}",
    )


def shard_files(
    files: Sequence[str], count: int, index: int
) -> tuple[list[str], tuple[int, int] | None]:
    """Worker `index` of `count`'s input: `(files, record_shard)`.

    Whole files when they split evenly: dealt largest first, each to the
    worker with the fewest bytes so far, as long as the heaviest worker
    then has at most `FILE_IMBALANCE` (10%) more bytes than the lightest
    (each worker reads only its files). Otherwise (fewer files than
    workers, or sizes that do not balance) every worker reads every file
    and keeps every `count`-th line from the `index`-th. Either way each
    line goes to exactly one worker.

    Why balance: synchronous workers take a step together, so a worker
    whose input ends first trains on empty batches (`fill_empty_batches`)
    while the others finish theirs: its replicas add nothing to those
    steps, and the tail of the epoch runs at `1 / count` of the rows.
    Every `count`-th line leaves the workers at most one batch apart.
    """
    files = list(files)
    if count == 1:
        return files, None
    if len(files) >= count:
        dealt = _deal_by_size(files, count)
        if dealt is not None:
            return dealt[index], None
    return files, (count, index)


def _deal_by_size(files: list[str], count: int) -> list[list[str]] | None:
    """`count` lists of `files` with even bytes, or None if they are not."""
    sizes = [_size(f) for f in files]
    if None in sizes:  # not local files (e.g. gs://): keep the file order
        return [files[i::count] for i in range(count)]
    loads = [0] * count
    dealt: list[list[str]] = [[] for _ in range(count)]
    # Largest first (ties by name), each to the lightest worker so far.
    for size, path in sorted(zip(sizes, files, strict=True), key=_by_size):
        lightest = loads.index(min(loads))
        loads[lightest] += int(size or 0)
        dealt[lightest].append(path)
    if max(loads) > (1 + FILE_IMBALANCE) * min(loads):
        return None
    order = {path: i for i, path in enumerate(files)}
    return [sorted(paths, key=order.__getitem__) for paths in dealt]


def _by_size(item: tuple[int | None, str]) -> tuple[int, str]:
    return -int(item[0] or 0), item[1]


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def mirrored_strategy() -> Any:
    """`MirroredStrategy` over the GPUs, else over the logical CPU devices.

    With `reduce` fixed for Keras 3's fit (`_fit_safe`).
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    strategy = _fit_safe(tf.distribute.MirroredStrategy)
    return strategy([d.name for d in devices])


def multi_worker_strategy() -> Any:
    """`MultiWorkerMirroredStrategy` with `reduce` fixed for Keras 3's fit.

    Keras 3's TensorFlow trainer cannot `fit` under this strategy in
    multi-worker mode as it is (tensorflow/tensorflow#72388): see
    `_fit_safe`.
    """
    import tensorflow as tf

    return _fit_safe(tf.distribute.MultiWorkerMirroredStrategy)()


def _fit_safe(base: Any) -> Any:
    """A subclass of the strategy `base` whose `reduce` Keras 3's fit takes.

    - each step's logs are scalars, which Keras reduces with
      `reduce("MEAN", value, axis=0)`: "Invalid reduction dimension 0 for
      input with 0 dimensions" (multi-worker). The mean over the replicas
      is what it means: for a scalar, `axis` is dropped here;
    - before the first step it averages a whole input batch over the
      replicas (`reduce("MEAN", batch)`) only to trace the model with its
      shapes, which fails on a dict and on string or integer ids
      (multi-worker), and on replicas' batches of different sizes
      (mirrored: "Inputs to operation AddN of type AddN must have the same
      size and shape. Input 0: [63] != input 1: [64]", when the header
      line leaves the first replica 63 rows of 64). A nested batch gets
      the first replica's part instead: same shapes and dtypes.
    """
    import tensorflow as tf

    class Strategy(base):  # type: ignore[misc, valid-type]
        def reduce(self, reduce_op: Any, value: Any, axis: Any) -> Any:
            if isinstance(value, dict | tuple | list):
                return tf.nest.map_structure(
                    lambda v: self.experimental_local_results(v)[0], value
                )
            local = self.experimental_local_results(value)[0]
            if axis is not None and local.shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return Strategy


def jax_distribution(name: str) -> Any:
    """`DataParallel`, or `ModelParallel` splitting the table by rows.

    Data parallelism over a single device is no distribution (None): on one
    H100, Keras' `DataParallel` path ran at half the single-device path's
    rows/s with the same weights (`benchmarks/distributed_gpu.py`), so a
    one-GPU job asked for `data-parallel` takes the single-device path.
    """
    import keras

    devices = keras.distribution.list_devices()
    if name == "data-parallel":
        if len(devices) == 1:
            return None
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh(
        shape=(1, len(devices)), axis_names=("batch", "model"), devices=devices
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map(mesh), batch_dim_name="batch"
    )


def layout_map(mesh: Any) -> Any:
    """A `LayoutMap` that splits the embedding tables by rows.

    `FeatureEmbedding`'s row-indexed variables (`embeddings`,
    `(num_rows, embedding_dim)`, and `linear_weights`, `(num_rows,)`) go
    to the mesh's `model` axis by rows, columns whole: a device holds
    `num_rows / devices` rows (JAX needs `num_rows` divisible by the number
    of devices) and the optimizer's slots of them follow. Every other
    variable (the DNN) is replicated.
    """
    import keras

    layouts = keras.distribution.LayoutMap(mesh)
    layouts[r".*/embeddings$"] = ("model", None)
    layouts[r".*/linear_weights$"] = ("model",)
    return layouts


def pad_batches(dataset: Any, multiple: int) -> Any:
    """Pads each batch to a multiple of `multiple` rows with 0-weight rows.

    JAX splits a batch evenly over devices; a batch whose row count does
    not divide (the last one, or one the holdout split thinned) gets rows
    of the first row repeated with weight 0, and real rows the weight
    `padded / real`, so the mean loss is still the mean over the real rows.
    """
    if multiple == 1:
        return dataset
    import tensorflow as tf

    def pad(features: Any, label: Any, *weights: Any) -> Any:
        rows = tf.shape(label)[0]
        padded = (rows + multiple - 1) // multiple * multiple
        extra = padded - rows

        def grow(x: Any) -> Any:
            filler = tf.repeat(x[:1], extra, axis=0)
            return tf.concat([x, filler], axis=0)

        scale = tf.cast(padded, tf.float32) / tf.cast(rows, tf.float32)
        base = weights[0] if weights else tf.ones_like(label, tf.float32)
        weight = tf.concat(
            [tf.cast(base, tf.float32) * scale, tf.zeros([extra])], axis=0
        )
        return {k: grow(v) for k, v in features.items()}, grow(label), weight

    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE)


def merge_sparse(optimizer: Any) -> None:
    """Sums the duplicate rows of sparse gradients after the all-reduce.

    On the TensorFlow backend the table's gradient is `tf.IndexedSlices`
    with one slice per read (a row read by 40 rows of the batch has 40
    slices), and a `tf.distribute` all-reduce concatenates the replicas'
    slices. Keras' own Adam squares a sparse gradient slice by slice
    (`keras.ops.square` keeps it sparse) before `v` sums them, so its
    second moment gets `sum_i g_i^2` instead of `(sum_i g_i)^2`: not Adam,
    and it depends on how the batch is split: a row gathered once per
    batch (a numeric field's) has one slice on one device and one per
    replica on several (measured: a DeepFM's table 0.0085 apart after one
    step at learning rate 0.01 on 1 vs 2 replicas). Here the all-reduced
    gradient is made dense (`tf.convert_to_tensor`: one segment sum, which
    XLA compiles), as Keras' Adam makes it anyway, so the update is dense
    Adam's on any number of replicas.

    `tffm.optimizers` (which have `lazy_rows`) sum the rows themselves and
    are left alone. This wraps the optimizer's `_all_reduce_sum_gradients`
    (Keras 3's TensorFlow optimizer, where the all-reduce happens): there
    is no public hook between the all-reduce and the update.
    """
    import tensorflow as tf

    if getattr(optimizer, "lazy_rows", None) is not None:
        return
    reduce = getattr(optimizer, "_all_reduce_sum_gradients", None)
    if reduce is None:
        raise RuntimeError(
            "This Keras version's optimizer has no _all_reduce_sum_gradients"
            ": tffm.distribute.merge_sparse needs updating."
        )

    def merged(grads_and_vars: Any) -> Any:
        return [
            (
                tf.convert_to_tensor(grad)
                if isinstance(grad, tf.IndexedSlices)
                else grad,
                var,
            )
            for grad, var in reduce(grads_and_vars)
        ]

    optimizer._all_reduce_sum_gradients = merged


def fill_empty_batches(model: Any) -> None:
    """A replica whose input has run out trains on one row of weight 0.

    Under a synchronous strategy every replica takes every step (the
    gradient all-reduce needs them all). When one input pipeline ends
    before the others (workers with fewer lines, or an odd number of
    batches over 2 replicas), `tf.distribute` hands its replicas empty
    batches until all have ended, and Keras' step on 0 rows gives NaN: a
    mean loss of 0 / 0, and batch normalization's moments of no rows go
    into its moving statistics (measured: 2 workers, files of 3,000 and
    300 rows; every weight NaN after one epoch, silently). Here such a
    batch becomes one row of zeros (ids 0: out of vocabulary) with sample
    weight 0: the loss and gradients are 0 and the moments finite. Other
    batches get sample weight 1, which changes no loss or metric.
    (Batch normalization's moving statistics still take that row in, once
    per early-ending replica and epoch; validation's `loss` counts it as a
    row of loss 0, and `embeddings_l2` the rows it reads.)
    """
    import keras
    import tensorflow as tf

    def filled(data: Any) -> Any:
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if weight is None:
            weight = tf.ones(tf.shape(y)[:1], tf.float32)

        def one_row(t: Any) -> Any:
            return tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype)

        empty = tf.equal(tf.shape(y)[0], 0)
        return tf.cond(
            empty,
            lambda: (
                tf.nest.map_structure(one_row, x),
                one_row(y),
                tf.zeros([1], weight.dtype),
            ),
            lambda: (x, y, weight),
        )

    train_step, test_step = model.train_step, model.test_step
    model.train_step = lambda data: train_step(filled(data))
    model.test_step = lambda data: test_step(filled(data))


def cluster() -> dict[str, Any]:
    """`TF_CONFIG` as a dict (`{}` when unset)."""
    text = os.environ.get("TF_CONFIG", "")
    return dict(json.loads(text)) if text else {}


def _worker_index(task_type: str, task_id: int, spec: dict[str, Any]) -> int:
    """Index among the input pipelines: the chief first, then workers."""
    chiefs = len(spec.get("chief", []))
    return task_id if task_type == "chief" else chiefs + task_id


def _replicas(strategy: Any, layout: Any) -> int:
    if strategy is not None:
        return int(strategy.num_replicas_in_sync)
    if layout is not None:
        mesh = layout.device_mesh
        return int(math.prod(mesh.shape)) // _model_axis(mesh)
    return 1


def _model_axis(mesh: Any) -> int:
    names = list(mesh.axis_names)
    return int(mesh.shape[names.index("model")]) if "model" in names else 1
