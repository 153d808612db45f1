"""Training past one device: strategies, batch and learning-rate scaling.

`plan(distribution, ...)` turns `TrainConfig.distribution` into a `Plan`: the
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
  tasks, asynchronous steps on the workers (`parameter_server`).
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
import math
import os
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from tffm.features import table_rows
from tffm.train.distribute import parameter_server
from tffm.train.distribute.layouts import jax_distribution
from tffm.train.distribute.layouts import pad_batches
from tffm.train.distribute.sharding import shard_files
from tffm.train.distribute.strategies import fill_empty_batches
from tffm.train.distribute.strategies import merge_sparse
from tffm.train.distribute.strategies import mirrored_strategy
from tffm.train.distribute.strategies import multi_worker_strategy
from tffm.train.resume import ResumeCheckpoint
from tffm.train.resume import fit_resumable

_TF = ("mirrored", "multi-worker", "parameter-server")
_JAX = ("data-parallel", "model-parallel")


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
        return parameter_server.serve()

    def output_folder(self, output: str) -> str:
        """Where this process writes: the chief `output`, others beside it."""
        if self.is_chief:
            return output
        return os.path.join(output, f"worker-{self.worker}")

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Variables created inside are distributed as the plan says.

        `parameter-server`: none are; the model built here is the chief's,
        which `parameter_server.fit_on_cluster` copies onto the ps tasks.
        """
        if self.distribution == "parameter-server":
            yield
        elif self.strategy is not None:
            with self.strategy.scope():
                yield
        elif self.layout is not None:
            import keras  # deferred: Keras

            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(self.layout)
            try:
                yield
            finally:
                keras.distribution.set_distribution(previous)
        else:
            yield

    @property
    def on_one_device(self) -> bool:
        """Whether the fit runs on one JAX device, unsplit.

        Then `model.fit` may keep the rows there
        (`tffm.train.device_fit`).
        """
        import keras  # deferred: Keras

        return (
            keras.backend.backend() == "jax"
            and self.strategy is None
            and self.layout is None
            and self.distribution != "parameter-server"
        )

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
            strategies, or a `parameter_server.TrainingInput`.
        """
        if self.distribution == "parameter-server":
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
        import keras  # deferred: Keras

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
        if getattr(dataset, "on_device", False):  # `DeviceRows`, one device
            return dataset
        if self.distribution == "multi-worker":
            import tensorflow as tf  # deferred: TensorFlow

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA
            )
            return dataset.with_options(options)
        if self.distribution == "data-parallel":
            return pad_batches(dataset, self.num_replicas)
        return dataset

    def fit(
        self,
        model: Any,
        dataset: Any,
        *,
        checkpoint: ResumeCheckpoint,
        epochs: int,
        callbacks: Sequence[Any],
        validation_data: Any = None,
        verbose: int | str = "auto",
    ) -> dict[str, list[float]]:
        """Fits `model` (built in `scope`, then `prepare`d) on `dataset`.

        `model.fit` resumed from `checkpoint` (`fit_resumable`); on a
        parameter-server cluster, the coordinator's loop
        (`parameter_server.fit_on_cluster`). Rows kept on the device
        (`DeviceRows`) are batched and shuffled there, in the checkpoint's
        `DeviceOrder`. Returns the whole history.
        """
        if self.distribution == "parameter-server":
            return parameter_server.fit_on_cluster(
                model,
                dataset,
                checkpoint=checkpoint,
                epochs=epochs,
                callbacks=callbacks,
                validation_data=validation_data,
                verbose=verbose,
            )
        reading: dict[str, Any] = {"shuffle": False}  # the reader shuffles
        if getattr(dataset, "on_device", False):
            reading = {
                "batch_size": self.rows_per_step,
                "shuffle": True,
                "order": checkpoint.order,
            }
        return fit_resumable(
            model,
            dataset,
            checkpoint=checkpoint,
            epochs=epochs,
            callbacks=callbacks,
            validation_data=validation_data,
            verbose=verbose,
            **reading,
        )


def plan(
    distribution: str,
    *,
    batch_size: int,
    learning_rate: float,
    batch_scaling: str = "global",
    data_format: str = "csv",
) -> Plan:
    """The `Plan` of `distribution` on this process.

    Create it first (before any TensorFlow op runs): multi-worker
    collectives must be configured at program start.

    Args:
        distribution: one of `TrainConfig`'s `DISTRIBUTIONS`.
        batch_size: int. The configured batch (see `batch_scaling`).
        learning_rate: float. The configured learning rate.
        batch_scaling: `"global"`, `"linear"` or `"sqrt"` (see `scale`).
        data_format: the training data's format (a parameter-server
            cluster reads text files only).
    """
    import keras  # deferred: Keras

    name = distribution
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
        return _parameter_server_plan(
            batch_size, learning_rate, batch_scaling, data_format
        )
    elif name in _JAX:
        layout = jax_distribution(name)
    replicas = _replicas(strategy, layout)
    batch, rate, note = scale(
        batch_size, learning_rate, batch_scaling, replicas
    )
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


def _parameter_server_plan(
    batch_size: int, learning_rate: float, batch_scaling: str, data_format: str
) -> Plan:
    """The chief trains (`parameter_server.fit_on_cluster`); the others serve.

    Steps are asynchronous, each one worker's batch: `batch_size` is that
    batch, and scaling (`batch_scaling`) applies to the replicas inside a
    worker (its GPUs), not to the workers.
    """
    if data_format in ("parquet", "encoded"):
        raise ValueError(
            f"distribution='parameter-server' cannot read format="
            f"{data_format!r}: its reader is a Python generator "
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
            batch_size=batch_size,
            learning_rate=learning_rate,
            note=f"parameter-server: {task_type} {task_id} serves the chief",
            serves=True,
        )
    strategy = parameter_server.strategy()
    replicas = int(strategy.num_replicas_in_sync)
    batch, rate, note = scale(
        batch_size, learning_rate, batch_scaling, replicas
    )
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


def scale(
    batch_size: int, learning_rate: float, batch_scaling: str, replicas: int
) -> tuple[int, float, str]:
    """`(global_batch, learning_rate, note)` for `replicas` replicas."""
    batch, rate = batch_size, learning_rate
    if batch_scaling == "global" or replicas == 1:
        per = f"{batch / replicas:g}" if replicas > 1 else str(batch)
        return (
            batch,
            rate,
            f"{replicas} replica(s), global batch {batch} ({per} per "
            f"replica), learning rate {rate:g}",
        )
    factor = replicas if batch_scaling == "linear" else replicas**0.5
    return (
        batch * replicas,
        rate * factor,
        f"{replicas} replicas x {batch} rows = global batch "
        f"{batch * replicas}, learning rate {rate:g} x {factor:g} "
        f"({batch_scaling} scaling) = {rate * factor:g}",
    )


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
