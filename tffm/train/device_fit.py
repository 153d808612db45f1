"""`model.fit` on the JAX backend with the training rows kept on the device.

Keras' own `fit` feeds a JAX model from the host: each epoch it slices the
arrays in numpy (`shuffle=True` permutes them there), and each step copies
one batch to the device. `fit_on_device` instead copies the rows to the
device once, as a few `(rows, words)` tables (every leaf of `(x, y,
sample_weight)` flattened to columns, 4-byte dtypes in one int32 table as
bit patterns, as `tffm encode` writes its shards), draws each epoch's order
there (`DeviceOrder`: a permutation that depends on `(seed, epoch)` only),
and runs several steps per compiled call: a `lax.fori_loop` whose body
gathers one batch of rows by index and calls the model's own
`train_step`, so the loss, metrics, sample weights, loss scaling and
optimizer are Keras'. Validation runs on the device the same way with
`test_step`.

Keras' semantics are kept: a `CallbackList` with `History` and the
progress bar, `validation_data` / `validation_split` / `validation_freq`,
`class_weight` / `sample_weight`, `initial_epoch`, `stop_training`, the
JAX state sync that callbacks (checkpoints) rely on. A compiled call runs
up to one epoch's steps when no callback needs to see each batch
(`steps_per_call`); a callback that does gets every step, as in Keras.

Where the switch happens (`takes_device_path`): arrays (numpy or JAX) or a
`DeviceRows` take this path when the backend is JAX, no
`keras.distribution` is set, the model is jit-compiled, and the rows fit
in `DEVICE_MEMORY_FRACTION` of the device's free memory
(`fits_on_device`); otherwise Keras' `fit` runs (for encoded shards,
`tffm.train.inputs` then streams them with `tf.data`, whose batches Keras
puts on the device one step ahead).
"""

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from tffm.data.encoded import EncodedData
from tffm.data.encoded_format import LABEL

logger = logging.getLogger(__name__)

# The training and validation rows may take this share of the device's free
# memory (the rest is the model, the optimizer and the step's activations).
DEVICE_MEMORY_FRACTION = 0.5
# Batch hooks of Keras' callbacks that only count steps or print: they may
# see one call per several steps.
_COARSE_OK = (keras.callbacks.History, keras.callbacks.ProgbarLogger)
_BATCH_HOOKS = {
    "train": (
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_batch_begin",
        "on_batch_end",
    ),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
}


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where one leaf of `(x, y, sample_weight)` sits in the tables."""

    table: int
    offset: int
    width: int
    dtype: str
    shape: tuple[int, ...]  # per row


class DeviceRows:
    """Rows of `(x, y, sample_weight)` packed as tables for the device.

    Each leaf of shape `(rows, *shape)` becomes `prod(shape)` columns of a
    table; leaves of 4-byte dtypes share one int32 table (floats as their
    bit patterns, so nothing is rounded), others get a table per dtype. A
    batch is then one gather of whole rows per table (`unpack` splits it
    back).

    Args:
        tables: the `(rows, words)` tables (numpy or JAX arrays).
        template: `(x, y, sample_weight)` with a `_Slot` per leaf.
    """

    on_device = True  # what `Plan.fit` recognizes

    def __init__(self, tables: Sequence[Any], template: Any) -> None:
        self.tables = list(tables)
        self.template = template
        self.rows = int(self.tables[0].shape[0])
        self._on_device: list[Any] | None = None

    @classmethod
    def from_arrays(
        cls, x: Any, y: Any = None, sample_weight: Any = None
    ) -> "DeviceRows":
        """Packs arrays (any pytree of them) with a leading `rows` axis."""
        leaves, treedef = jax.tree.flatten((x, y, sample_weight))
        rows = {int(np.shape(leaf)[0]) for leaf in leaves}
        if len(rows) != 1:
            raise ValueError(
                "All arrays of `x`, `y` and `sample_weight` must have the "
                f"same number of rows. Received: rows={sorted(rows)}"
            )
        groups: dict[str, list[Any]] = {}
        slots = []
        for leaf in leaves:
            # The dtype JAX holds it in (int64 as int32 unless x64 is on),
            # as Keras' own transfer to the device would give.
            dtype = np.dtype(jax.dtypes.canonicalize_dtype(leaf.dtype))
            if dtype != np.dtype(leaf.dtype):
                leaf = np.asarray(leaf).astype(dtype)
            key = "int32" if dtype.itemsize == 4 else dtype.name
            columns = groups.setdefault(key, [])
            offset = sum(int(np.prod(c.shape[1:])) for c in columns)
            column = _columns(leaf, key)  # (rows, width)
            columns.append(column)
            slots.append(
                (key, offset, column.shape[1], dtype.name, np.shape(leaf)[1:])
            )
        keys = list(groups)
        tables = [_concatenate(groups[k]) for k in keys]
        template = jax.tree.unflatten(
            treedef,
            [
                _Slot(keys.index(k), o, w, d, tuple(int(s) for s in shape))
                for k, o, w, d, shape in slots
            ],
        )
        return cls(tables, template)

    @classmethod
    def from_encoded(cls, data: EncodedData) -> "DeviceRows":
        """An encoded dataset's rows, as its shards hold them (one table).

        `x` is `{feature: ids or values}` and `y` the label, the same
        arrays `EncodedData.split` gives.
        """
        x = {}
        label = None
        for c in data.columns:
            shape = (c.width,) if c.is_list else ()
            slot = _Slot(0, c.offset, c.width, c.dtype, shape)
            if c.name == LABEL:
                label = slot
            else:
                x[c.name] = slot
        return cls([data.read_rows()], (x, label, None))

    @property
    def nbytes(self) -> int:
        return sum(
            int(t.size) * np.dtype(t.dtype).itemsize for t in self.tables
        )

    def device_tables(self) -> list[Any]:
        """The tables on the default device, copied there once."""
        if self._on_device is None:
            self._on_device = [jnp.asarray(t) for t in self.tables]
        return self._on_device

    def unpack(self, tables: Sequence[Any]) -> Any:
        """`(x, y, sample_weight)` of gathered `(batch_size, words)` tables."""

        def leaf(slot: _Slot) -> Any:
            block = tables[slot.table][
                :, slot.offset : slot.offset + slot.width
            ]
            if np.dtype(slot.dtype) != block.dtype:
                block = jax.lax.bitcast_convert_type(block, slot.dtype)
            return block.reshape((block.shape[0], *slot.shape))

        return jax.tree.map(
            leaf, self.template, is_leaf=lambda s: isinstance(s, _Slot)
        )

    def head(self, rows: int) -> Any:
        """`unpack` of the first `rows` rows (to build the model)."""
        return self.unpack([jnp.asarray(t[:rows]) for t in self.tables])

    def split(self, fraction: float) -> tuple["DeviceRows", "DeviceRows"]:
        """The first `fraction` of the rows and the rest (Keras' split)."""
        at = int(math.floor(self.rows * fraction))
        return (
            DeviceRows([t[:at] for t in self.tables], self.template),
            DeviceRows([t[at:] for t in self.tables], self.template),
        )


class DeviceOrder:
    """Each epoch's row order, fixed by `(seed, epoch)`, and a resume skip.

    `permutation(epoch, rows)` is a uniformly random permutation drawn on
    the device from `fold_in(key(seed), epoch)`: it does not depend on how
    many epochs this process ran, so a restarted fit reads the same order.
    `tffm.train.resume.ResumeCheckpoint` calls `set(epoch, skip)` at each
    epoch's start, as for `tffm.data.InputOrder`; the fit then skips the
    first `skip` steps of that epoch.

    Args:
        seed: int. The shuffle seed; None keeps the rows' order (a resumed
            epoch still skips).
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = None if seed is None else int(seed)
        self.epoch = 0
        self.skip = 0

    def set(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def steps_to_skip(self, epoch: int) -> int:
        return self.skip if epoch == self.epoch else 0

    def permutation(self, epoch: int, rows: int) -> Any:
        """`(rows,)` int32 row indices of epoch `epoch`, on the device."""
        if self.seed is None:
            return jnp.arange(rows, dtype=jnp.int32)
        return _permutation(self.seed, epoch, rows)


def encoded_rows(
    train: EncodedData, valid: EncodedData | None, *, seed: int | None
) -> tuple[DeviceRows, DeviceRows | None, DeviceOrder] | None:
    """Encoded training (and validation) rows for the device, or None.

    None when they do not fit (`fits_on_device`): the caller streams the
    shards instead. `seed` None keeps the written order.
    """
    nbytes = (train.num_rows + (valid.num_rows if valid else 0)) * (
        4 * train.row_width
    )
    if not fits_on_device(nbytes):
        logger.info(
            "the encoded rows (%s bytes) do not fit on the device: "
            "streaming the shards",
            f"{nbytes:,}",
        )
        return None
    logger.info(
        "the encoded rows (%s bytes) are kept on the device", f"{nbytes:,}"
    )
    return (
        DeviceRows.from_encoded(train),
        DeviceRows.from_encoded(valid) if valid is not None else None,
        DeviceOrder(seed),
    )


def fits_on_device(nbytes: int) -> bool:
    """Whether `nbytes` of rows fit in `DEVICE_MEMORY_FRACTION` of memory.

    The default device's free memory (`memory_stats`), or on a CPU device
    (which reports none) the host's available memory.
    """
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return nbytes <= DEVICE_MEMORY_FRACTION * free


def takes_device_path(
    model: Any, x: Any, y: Any, validation_data: Any, **options: Any
) -> str | None:
    """None when `fit` can run on the device, else why it cannot.

    Args:
        model: the compiled model.
        x: `fit`'s `x`.
        y: `fit`'s `y`.
        validation_data: `fit`'s `validation_data`.
        **options: `fit`'s `shuffle`, `steps_per_epoch`, `validation_steps`.
    """
    if keras.backend.backend() != "jax":
        return "the backend is not JAX"
    if keras.distribution.distribution() is not None:
        return "a keras.distribution is set"
    if model.run_eagerly or not model.jit_compile:
        return "the model runs eagerly"
    if options.get("steps_per_epoch") or options.get("validation_steps"):
        return "steps_per_epoch / validation_steps are set"
    if options.get("shuffle") not in (True, False):
        return f"shuffle={options.get('shuffle')!r}"
    if not isinstance(x, DeviceRows) and not _arrays(x, y):
        return "the input is not arrays"
    if validation_data is not None and not isinstance(
        validation_data, DeviceRows
    ):
        if not isinstance(validation_data, tuple | list) or not _arrays(
            *validation_data
        ):
            return "the validation data is not arrays"
    nbytes = _nbytes(x) + _nbytes(y) + _nbytes(validation_data)
    if not fits_on_device(nbytes):
        return f"{nbytes:,} bytes of rows do not fit on the device"
    return None


def fit_on_device(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    epochs: int = 1,
    verbose: int | str = "auto",
    callbacks: Sequence[Any] | None = None,
    validation_split: float = 0.0,
    validation_data: Any = None,
    shuffle: bool = True,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    initial_epoch: int = 0,
    validation_batch_size: int | None = None,
    validation_freq: int | Sequence[int] = 1,
    order: DeviceOrder | None = None,
) -> Any:
    """`keras.Model.fit` with the rows on the device (see the module).

    Takes `keras.Model.fit`'s arguments (see `takes_device_path` for those
    it needs) and `order`, the `DeviceOrder` to shuffle by (by default one
    seeded from numpy's global generator, which
    `keras.utils.set_random_seed` seeds). `x` may be a `DeviceRows` (then
    `y` and `sample_weight` are in it).

    Returns:
        The `History`.
    """
    model._assert_compile_called("fit")
    batch_size = int(batch_size or 32)
    if sample_weight is not None and class_weight is not None:
        raise ValueError(
            "You cannot `class_weight` and `sample_weight` at the same time."
        )
    if isinstance(x, DeviceRows):
        train = x
    else:
        if class_weight is not None:
            sample_weight = _class_weights(y, class_weight)
        train = DeviceRows.from_arrays(x, y, sample_weight)
    valid = None
    if validation_data is not None:
        valid = (
            validation_data
            if isinstance(validation_data, DeviceRows)
            else DeviceRows.from_arrays(*_unpack(validation_data))
        )
    elif validation_split:
        train, valid = train.split(1.0 - validation_split)
    if order is None:
        # numpy's global generator: `keras.utils.set_random_seed` seeds it.
        seed = np.random.randint(2**31 - 1)  # noqa: NPY002
        order = DeviceOrder(seed if shuffle else None)
    shuffle = bool(shuffle) and order.seed is not None
    model._symbolic_build(data_batch=train.head(min(batch_size, train.rows)))
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=-(-train.rows // batch_size),
        model=model,
    )
    trainer = _Trainer(model, train, batch_size, callback_list)
    validator = None
    if valid is not None:
        validator = _Trainer(
            model,
            valid,
            int(validation_batch_size or batch_size),
            callback_list,
        )
    model.stop_training = False
    training_logs: dict[str, Any] = {}
    finished = False
    callback_list.on_train_begin()
    initial_epoch = model._initial_epoch or initial_epoch
    try:
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            skip = order.steps_to_skip(epoch)
            perm = order.permutation(epoch, train.rows) if shuffle else None
            logs = trainer.train_epoch(perm, skip)
            model.jax_state_sync()
            epoch_logs = dict(model._get_metrics_result_or_logs(logs))
            if validator is not None and model._should_eval(
                epoch, validation_freq
            ):
                val_logs = validator.evaluate()
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if model.stop_training:
                break
        finished = True
    finally:
        model.jax_state_sync()
        if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        if finished:
            callback_list.on_train_end(logs=training_logs)
        model._jax_state = None
    return model.history


def steps_per_call(
    model: Any, callbacks: Sequence[Any], stage: str, steps: int
) -> int:
    """Steps one compiled call may run before the callbacks are called.

    The model's `steps_per_execution` when it was compiled with one above
    1; else a whole epoch (`steps`), unless a callback has batch hooks of
    its own: then every step, or every `batch_period` steps for a callback
    with that attribute (`ResumeCheckpoint`: its checkpoint interval; 0
    means epoch ends only). Keras' `History`, progress bar, and
    `ModelCheckpoint`, `BackupAndRestore` and `TensorBoard` acting per
    epoch only count steps or print.
    """
    if model.steps_per_execution > 1:
        return int(model.steps_per_execution)
    period = 0
    for callback in callbacks:
        if not _has_batch_hooks(callback, stage) or _coarse_ok(callback):
            continue
        own = getattr(callback, "batch_period", None)
        if own is None:
            return 1
        period = math.gcd(period, int(own))
    return max(1, period or steps)


class _Trainer:
    """The compiled calls of one fit's training or validation rows."""

    def __init__(
        self, model: Any, rows: DeviceRows, batch_size: int, callbacks: Any
    ) -> None:
        self.model = model
        self.rows = rows
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.full, self.last = divmod(rows.rows, batch_size)
        self.tables = rows.device_tables()

    def train_epoch(self, perm: Any, skip: int) -> Any:
        """Runs one epoch's steps from `skip`; returns the last logs."""
        model, callbacks = self.model, self.callbacks
        per_call = steps_per_call(
            model, callbacks.callbacks, "train", self.full + bool(self.last)
        )
        model._jax_state_synced = True
        logs = None
        step = skip
        begin = 0  # the batch index callbacks see (a resumed epoch: 0)
        total = self.full + bool(self.last)
        while step < total:
            size = self.batch_size if step < self.full else self.last
            count = min(per_call, self.full - step) if step < self.full else 1
            callbacks.on_train_batch_begin(begin)
            if model._jax_state_synced:  # a callback may have synced it
                state = model._get_jax_state(
                    trainable_variables=True,
                    non_trainable_variables=True,
                    optimizer_variables=True,
                    metrics_variables=True,
                    purge_model_variables=True,
                )
                model._jax_state_synced = False
            run = _compiled(model, self.rows, "train", size, perm is not None)
            logs, state = run(
                state, self.tables, perm, step * self.batch_size, count
            )
            model._jax_state = dict(
                zip(
                    (
                        "trainable_variables",
                        "non_trainable_variables",
                        "optimizer_variables",
                        "metrics_variables",
                    ),
                    state,
                    strict=True,
                )
            )
            step += count
            begin += count
            callbacks.on_train_batch_end(begin - 1, logs)
            if model.stop_training:
                break
        return logs if logs is not None else {}

    def evaluate(self) -> dict[str, Any]:
        """`model.evaluate` of the rows inside `fit`: the `val_` logs."""
        model, callbacks = self.model, self.callbacks
        total = self.full + bool(self.last)
        per_call = steps_per_call(model, callbacks.callbacks, "test", total)
        model.stop_evaluating = False
        callbacks.on_test_begin()
        model.reset_metrics()
        model._jax_state_synced = True
        logs = None
        step = 0
        while step < total:
            size = self.batch_size if step < self.full else self.last
            count = min(per_call, self.full - step) if step < self.full else 1
            callbacks.on_test_batch_begin(step)
            if model._jax_state_synced:
                state = model._get_jax_state(
                    trainable_variables=True,
                    non_trainable_variables=True,
                    metrics_variables=True,
                    purge_model_variables=True,
                )
                model._jax_state_synced = False
            run = _compiled(model, self.rows, "test", size, False)
            logs, state = run(
                state, self.tables, None, step * self.batch_size, count
            )
            model._jax_state = dict(
                zip(
                    (
                        "trainable_variables",
                        "non_trainable_variables",
                        "metrics_variables",
                    ),
                    state,
                    strict=True,
                )
            )
            step += count
            callbacks.on_test_batch_end(step - 1, logs)
            if model.stop_evaluating:
                break
        model.jax_state_sync()
        result = _pythonify(model._get_metrics_result_or_logs(logs or {}))
        callbacks.on_test_end(result)
        model._jax_state = None
        return result


def reset_compiled(model: Any) -> None:
    """Forgets the compiled calls (the model was compiled again)."""
    model.__dict__.pop("_tffm_device_calls", None)


def _compiled(
    model: Any, rows: DeviceRows, stage: str, batch_size: int, shuffled: bool
) -> Callable[..., Any]:
    """The jitted `run(state, tables, perm, first_row, count)` of `stage`.

    Cached on the model by what changes the program, so a second `fit`
    (or each epoch) compiles nothing.
    """
    calls = model.__dict__.setdefault("_tffm_device_calls", {})
    shapes = tuple((tuple(t.shape[1:]), str(t.dtype)) for t in rows.tables)
    key = (stage, batch_size, shuffled, shapes, repr(rows.template))
    if key not in calls:
        step = model.train_step if stage == "train" else model.test_step

        def batch_of(tables: Any, perm: Any, first: Any) -> Any:
            if perm is None:  # in order: contiguous rows
                parts = [
                    jax.lax.dynamic_slice_in_dim(t, first, batch_size)
                    for t in tables
                ]
            else:
                index = jax.lax.dynamic_slice_in_dim(perm, first, batch_size)
                parts = [jnp.take(t, index, axis=0) for t in tables]
            return rows.unpack(parts)  # one gather of whole rows per table

        def run(
            state: Any, tables: Any, perm: Any, first: Any, count: Any
        ) -> Any:
            batch = batch_of(tables, perm, first)
            logs_shape = jax.eval_shape(
                lambda s, b: step(s, b)[0], state, batch
            )
            logs = jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), logs_shape
            )

            def body(i: Any, carry: Any) -> Any:
                state, _ = carry
                logs, state = step(
                    state, batch_of(tables, perm, first + i * batch_size)
                )
                return state, logs

            state, logs = jax.lax.fori_loop(0, count, body, (state, logs))
            return logs, state

        calls[key] = jax.jit(run, donate_argnums=0)
    return calls[key]  # type: ignore[no-any-return]


@functools.partial(jax.jit, static_argnums=2)
def _permutation(seed: Any, epoch: Any, rows: int) -> Any:
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return jax.random.permutation(key, rows).astype(jnp.int32)  # (rows,)


def _has_batch_hooks(callback: Any, stage: str) -> bool:
    base = keras.callbacks.Callback
    return any(
        getattr(type(callback), name) is not getattr(base, name)
        or name in vars(callback)
        for name in _BATCH_HOOKS[stage]
    )


def _coarse_ok(callback: Any) -> bool:
    if isinstance(callback, _COARSE_OK):
        return True
    if isinstance(
        callback,
        keras.callbacks.ModelCheckpoint | keras.callbacks.BackupAndRestore,
    ):
        return bool(callback.save_freq == "epoch")
    if isinstance(callback, keras.callbacks.TensorBoard):
        return callback.update_freq == "epoch" and not getattr(
            callback, "_start_batch", 0
        )
    return False


def _arrays(*values: Any) -> bool:
    """Whether every leaf is a numpy or JAX array (and there are some)."""
    leaves = jax.tree.leaves(
        values, is_leaf=lambda v: not isinstance(v, dict | list | tuple)
    )
    return bool(leaves) and all(
        isinstance(v, np.ndarray | jax.Array) for v in leaves
    )


def _nbytes(value: Any) -> int:
    if isinstance(value, DeviceRows):
        return value.nbytes
    return sum(
        int(np.prod(np.shape(v))) * np.dtype(v.dtype).itemsize
        for v in jax.tree.leaves(value)
    )


def _unpack(data: Any) -> tuple[Any, Any, Any]:
    """`(x, y)` or `(x, y, sample_weight)` as a triple."""
    data = tuple(data)
    if len(data) not in (2, 3):
        raise ValueError(
            "`validation_data` must be `(x, y)` or `(x, y, sample_weight)`. "
            f"Received: a tuple of {len(data)}"
        )
    return (*data, None) if len(data) == 2 else data  # type: ignore[return-value]


def _columns(leaf: Any, key: str) -> Any:
    """`(rows, *shape)` -> `(rows, prod(shape))`, 4-byte words as int32."""
    if isinstance(leaf, np.ndarray):
        leaf = np.ascontiguousarray(leaf)
    column = leaf.reshape((leaf.shape[0], -1))
    if key == "int32" and np.dtype(leaf.dtype) != np.int32:
        if isinstance(column, np.ndarray):
            return column.view(np.int32)
        return jax.lax.bitcast_convert_type(column, jnp.int32)
    return column


def _concatenate(columns: list[Any]) -> Any:
    if all(isinstance(c, np.ndarray) for c in columns):
        return np.concatenate(columns, axis=1)
    return jnp.concatenate([jnp.asarray(c) for c in columns], axis=1)


def _class_weights(y: Any, class_weight: dict[int, float]) -> np.ndarray:
    """Keras' `class_weight` as per-row weights (rounded labels)."""
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = (
            np.argmax(labels, axis=-1)
            if labels.shape[-1] != 1
            else labels[..., 0]
        )
    labels = np.round(labels).astype(np.int64)
    weights = np.ones(labels.shape[0], dtype=keras.config.floatx())
    for label, weight in class_weight.items():
        weights[labels == int(label)] = weight
    return weights


def _pythonify(logs: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(logs).items():
        array = np.asarray(value)
        out[key] = array.item() if array.ndim == 0 else array
    return out
