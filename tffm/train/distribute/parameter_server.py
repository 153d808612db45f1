"""`ParameterServerStrategy` training: variables on parameter servers.

A `parameter-server` cluster (`TF_CONFIG`) has one `chief`, `worker`
tasks and `ps` tasks, each started with the same `tffm train` command:

- `ps` and `worker` tasks run a `tf.distribute.Server` (`serve`) until
  the chief is gone. Each variable (the fused embedding table, the linear
  weights, each DNN kernel) and its optimizer slots live whole on one
  `ps` task, placed round-robin; workers never hold them: a step reads
  the rows its batch needs (a sparse gather on the ps) and sends back
  their gradients.
- the `chief` scans the data, builds the model, and `fit_on_cluster`
  drives training through a `ClusterCoordinator`: each scheduled step runs on a
  free worker, on that worker's own part of the input (every `N`-th line,
  `N` workers), and applies its update to the variables at once
  (asynchronous training: no step waits for another worker's).

Keras 3's `Model.fit` has no `ParameterServerStrategy` support (its
TensorFlow trainer calls `strategy.run` on the chief, which this strategy
refuses), so `fit_on_cluster` is a loop of its own around Keras' own
`train_step`,
on a copy of the chief's model built in the strategy's scope; the chief's
model gets the trained variables after each epoch and is what the epoch's
callbacks, the validation and the saved files see. An epoch is each
worker reading its part once: a step on a worker whose input is exhausted
trains nothing and says so, and the epoch ends when every worker has.

Two obstacles, and their workarounds:

- `ClusterCoordinator.create_per_worker_dataset` traces the input function
  with variable creation forbidden ("Creating variables in `dataset_fn` is
  not allowed"); tffm's readers keep their row checks in variables
  (`tffm.data.lines.RowLog`). They are created on the chief instead
  (`_on_chief`), where the workers' input pipelines read and write them.
- one variable split over several ps tasks (a `variable_partitioner`) is a
  `ShardedVariable`, which Keras 3 cannot train: its optimizer fails with
  "ShardedVariable doesn't support being used as a reference" (`keras/src/
  backend/tensorflow/optimizer.py`, `_distributed_tf_update_step`), and
  `tf.GradientTape` cannot differentiate through the Keras variable
  (`'ShardedVariable' object has no attribute 'handle'`). So no partitioner
  is set: a table must fit one ps task's memory (not a worker's).
"""

import collections
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

# A `worker` or `ps` task exits once the chief's port has been closed for
# this long (the chief finished or died; a restarted job restarts all).
CHIEF_GONE_SECONDS = 5.0
_POLL_SECONDS = 1.0
# Steps scheduled ahead of the one whose result the chief waits for, per
# worker: enough to keep every worker busy.
_AHEAD_PER_WORKER = 4

logger = logging.getLogger(__name__)


def cluster_task() -> tuple[str, int]:
    """This process's `(task_type, task_id)` in `TF_CONFIG`."""
    config = _tf_config()
    task = config.get("task", {})
    if "type" not in task:
        raise ValueError(
            "distribution='parameter-server' needs TF_CONFIG with the "
            'cluster and this process\'s task, e.g. {"cluster": {"chief": '
            '[...], "worker": [...], "ps": [...]}, "task": {"type": '
            '"chief", "index": 0}}.'
        )
    cluster = config.get("cluster", {})
    for job in ("chief", "worker", "ps"):
        if not cluster.get(job):
            raise ValueError(
                "distribution='parameter-server' needs a `chief`, "
                f"`worker` and `ps` job in TF_CONFIG's cluster. Received: "
                f"cluster={cluster}"
            )
    return str(task["type"]), int(task.get("index", 0))


def num_workers() -> int:
    """The number of `worker` tasks in `TF_CONFIG`."""
    return len(_tf_config()["cluster"]["worker"])


def serve(*, chief_gone_seconds: float = CHIEF_GONE_SECONDS) -> dict[str, Any]:
    """Runs this `worker` or `ps` task's server until the chief is gone.

    The server starts at once; the chief connects when it is ready. Once
    the chief's address has accepted a connection and then refused them
    for `chief_gone_seconds`, the server stops and this returns
    `{"served": "<task>:<index>"}`.
    """
    import tensorflow as tf  # deferred: TensorFlow

    # Fail fast when a peer is gone, so the coordinator can reschedule
    # (TensorFlow's advice for parameter-server tasks).
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
    task_type, task_id = cluster_task()
    if task_type not in ("worker", "ps"):
        raise ValueError(f"{task_type!r} tasks do not serve; the chief fits.")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    tf.distribute.Server(
        resolver.cluster_spec(),
        job_name=task_type,
        task_index=task_id,
        protocol=resolver.rpc_layer or "grpc",
        start=True,
    )
    logger.info("parameter-server %s %s serving", task_type, task_id)
    host, port = _tf_config()["cluster"]["chief"][0].rsplit(":", 1)
    seen, gone_since = False, 0.0
    while True:
        time.sleep(_POLL_SECONDS)
        if _reachable(host, int(port)):
            seen, gone_since = True, 0.0
        elif seen:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since >= chief_gone_seconds:
                return {"served": f"{task_type}:{task_id}"}


def strategy() -> Any:
    """The chief's `tf.distribute.ParameterServerStrategy` (`TF_CONFIG`).

    No `variable_partitioner`: Keras 3 cannot train a `ShardedVariable`
    (see the module), so each variable lives whole on one ps task.
    """
    import tensorflow as tf  # deferred: TensorFlow

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.ParameterServerStrategy(resolver)


@dataclasses.dataclass
class TrainingInput:
    """The training data of a parameter-server fit, read by the workers.

    Attributes:
        strategy: the `ParameterServerStrategy`.
        num_workers: the number of worker tasks.
        batch_size: rows of one step (one worker's batch).
        build: `build(batch_size, record_shard)` returns the encoded
            `(features, label)` dataset of the lines of the training files
            that `record_shard = (count, index)` selects (every `count`-th
            from the `index`-th; `index` is a tensor here).
    """

    strategy: Any
    num_workers: int
    batch_size: int
    build: Callable[[int, tuple[Any, Any]], Any]

    def per_worker_dataset(self, coordinator: Any) -> Any:
        """One pipeline per worker, each over its every `N`-th line."""
        import tensorflow as tf  # deferred: TensorFlow

        count = self.num_workers
        variable_class = type(tf.Variable(0))  # here: none may be made there

        def replica_input(context: Any) -> Any:
            batch = context.get_per_replica_batch_size(self.batch_size)
            worker = _worker_index()
            with _on_chief(variable_class):
                return self.build(batch, (count, worker))

        def worker_input() -> Any:
            return self.strategy.distribute_datasets_from_function(
                replica_input
            )

        # autograph off: the readers are Python building a graph, not
        # Python to convert.
        return coordinator.create_per_worker_dataset(
            tf.function(worker_input, autograph=False)
        )


def fit_on_cluster(
    model: Any,
    data: TrainingInput,
    *,
    checkpoint: Any,
    epochs: int,
    callbacks: Sequence[Any],
    validation_data: Any = None,
    verbose: int | str = "auto",
) -> dict[str, list[float]]:
    """Trains `model` on the parameter servers; returns the history.

    `model` (compiled, on the chief) is copied into the strategy's scope:
    the copy's variables live on the ps tasks and the workers train them;
    after each epoch `model` gets their values (weights and optimizer
    state), is validated on `validation_data` and passed to `callbacks`
    and `checkpoint` (a `tffm.train.resume.ResumeCheckpoint`, restored
    first and pushed to the ps tasks; it checkpoints at epoch ends; a fit
    it holds as finished is not run again). A learning rate a callback
    sets on `model` is pushed to the ps tasks at each epoch's start.
    Epochs are logged (`verbose`) to the `tffm` logger.
    """
    import keras  # deferred: Keras
    import tensorflow as tf  # deferred: TensorFlow

    finished = checkpoint.finished_history(model)
    if finished is not None:
        return dict(finished)
    checkpoint.callbacks = list(callbacks)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(data.strategy)
    remote = replicate(model, data.strategy, validation_data)
    dataset = data.per_worker_dataset(coordinator)
    step = _step_function(remote, data.strategy)
    listed = keras.callbacks.CallbackList(
        [*callbacks, checkpoint], model=model, epochs=epochs
    )
    model.stop_training = False
    listed.on_train_begin()
    copy_variables(model, remote)  # the resumed state, if any
    logs: dict[str, Any] = {}
    for epoch in range(checkpoint.initial_epoch, epochs):
        listed.on_epoch_begin(epoch)
        remote.optimizer.learning_rate = float(
            keras.ops.convert_to_numpy(model.optimizer.learning_rate)
        )
        remote.reset_metrics()
        started = time.monotonic()
        steps = _run_epoch(coordinator, step, dataset, data.num_workers)
        copy_variables(remote, model)
        logs = {
            k: float(keras.ops.convert_to_numpy(v))
            for k, v in remote.get_metrics_result().items()
        }
        if validation_data is not None:
            scores = model.evaluate(
                validation_data, verbose=0, return_dict=True
            )
            logs.update({f"val_{k}": float(v) for k, v in scores.items()})
        if verbose:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
            logger.info(
                "epoch %d/%d: %d steps (per worker %s) in %.1f s; %s",
                epoch + 1,
                epochs,
                sum(steps),
                steps,
                time.monotonic() - started,
                shown,
            )
        listed.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    listed.on_train_end(logs)
    history: dict[str, list[float]] = checkpoint.history
    return history


def replicate(model: Any, strategy: Any, example: Any = None) -> Any:
    """`model`'s copy in `strategy`'s scope, compiled and built likewise.

    Its variables (weights, optimizer slots, metrics) are created on the
    ps tasks, with `model`'s values. `example`, a dataset of encoded
    batches, builds the compiled loss and metrics on the chief (a worker
    cannot create variables).
    """
    with strategy.scope():
        remote = type(model).from_config(model.get_config())
        remote.compile_from_config(model.get_compile_config())
        remote.optimizer.build(remote.trainable_variables)
        if example is not None:
            for features, label in example.take(1):
                predicted = remote(features, training=False)
                remote.compute_loss(features, label, predicted)
                remote.compute_metrics(features, label, predicted, None)
            remote.reset_metrics()
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    copy_variables(model, remote)
    variables = {
        id(v): v
        for v in (
            *remote.variables,
            *remote.optimizer.variables,
            *remote.metrics_variables,
        )
    }
    for variable in variables.values():
        _add_in_place(variable)
    return remote


def _add_in_place(variable: Any) -> None:
    """Makes a Keras variable's `assign_add` / `assign_sub` one ps op.

    Keras 3's `Variable.assign_add(x)` is `assign(self + x)`: a read, then
    a write. Workers stepping at once then overwrite each other's updates
    (measured: 2 workers, 120 steps: the optimizer's `iterations` ended at
    99 and the loss metric's count at 100 steps' rows; Adam's moments and
    the weights' updates are lost alike). `tf.Variable.assign_add` is one
    `AssignAddVariableOp` on the ps, which holds the variable's lock, so
    every step's update lands (computed from the values it read, as
    asynchronous training does).
    """
    import tensorflow as tf  # deferred: TensorFlow

    value = getattr(variable, "value", None)
    if not isinstance(value, tf.Variable):
        return

    def assign_add(delta: Any) -> Any:
        return value.assign_add(tf.cast(delta, value.dtype))

    def assign_sub(delta: Any) -> Any:
        return value.assign_sub(tf.cast(delta, value.dtype))

    variable.assign_add = assign_add
    variable.assign_sub = assign_sub


def copy_variables(source: Any, target: Any) -> None:
    """Assigns `source`'s weights and optimizer variables to `target`'s."""
    import keras  # deferred: Keras

    pairs = [
        (source.weights, target.weights),
        (source.optimizer.variables, target.optimizer.variables),
    ]
    for values, variables in pairs:
        if len(values) != len(variables):
            raise ValueError(
                f"Models differ: {len(values)} variables against "
                f"{len(variables)}."
            )
        for value, variable in zip(values, variables, strict=True):
            variable.assign(keras.ops.convert_to_numpy(value))


@contextlib.contextmanager
def _on_chief(kind: Any) -> Iterator[None]:
    """Variables created inside live on the chief (see the module).

    `create_per_worker_dataset` forbids `tf.Variable(...)` through its
    variable creator; constructing the variable's own class, `kind` (the
    class of an eager `tf.Variable`), goes around the creators, and it
    creates the variable eagerly (lifted out of the traced function), on
    the chief.
    """
    import tensorflow as tf  # deferred: TensorFlow

    def create(next_creator: Any, **kwargs: Any) -> Any:
        del next_creator
        wanted = ("initial_value", "trainable", "dtype", "name", "shape")
        return kind(**{k: kwargs[k] for k in wanted if k in kwargs})

    with tf.variable_creator_scope(create):
        yield


def _step_function(model: Any, strategy: Any) -> Any:
    """The scheduled step: `(worker, trained)`; one batch of that worker."""
    import tensorflow as tf  # deferred: TensorFlow

    def step(iterator: Any) -> Any:
        batch = iterator.get_next_as_optional()

        def train() -> Any:
            strategy.run(model.train_step, args=(batch.get_value(),))
            return tf.constant(True)

        trained = tf.cond(batch.has_value(), train, lambda: tf.constant(False))
        return _worker_index(), trained

    return tf.function(step)


def _run_epoch(
    coordinator: Any, step: Any, dataset: Any, workers: int
) -> list[int]:
    """Schedules steps until every worker's input is exhausted.

    Returns:
        The steps each worker trained.
    """
    iterator = iter(dataset)  # new iterators: a new pass on each worker
    pending: collections.deque[Any] = collections.deque()
    exhausted: set[int] = set()
    steps = [0] * workers
    while len(exhausted) < workers or pending:
        while len(exhausted) < workers and len(pending) < (
            _AHEAD_PER_WORKER * workers
        ):
            pending.append(coordinator.schedule(step, args=(iterator,)))
        worker, trained = pending.popleft().fetch()
        if trained:
            steps[int(worker)] += 1
        else:
            exhausted.add(int(worker))
    return steps


def _worker_index() -> Any:
    """The index of the worker running this (a tensor; in a traced function)."""
    import tensorflow as tf  # deferred: TensorFlow

    return tf.distribute.coordinator.experimental_get_current_worker_index()


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError):
        with socket.create_connection((host, port), timeout=1.0):
            return True
    return False


def _tf_config() -> dict[str, Any]:
    text = os.environ.get("TF_CONFIG", "")
    return dict(json.loads(text)) if text else {}
