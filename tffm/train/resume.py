"""Resuming a killed `tffm train`: atomic checkpoints and the input position.

`keras.callbacks.BackupAndRestore` restores weights and the epoch, which
is not enough to continue a run exactly where SIGKILL stopped it: it writes
`latest.weights.h5` in place (a kill during the write leaves a corrupt
file and no good one), saves the epoch but not the position inside it (the
epoch restarts from its first batch, so its first part is trained on
twice), and keeps neither the other callbacks' state (early stopping's
best score and patience, the learning-rate schedule's) nor the history.

`ResumeCheckpoint` keeps all of that in one file, `checkpoint.npz`: model,
optimizer and metric variables, epoch, step, the other callbacks' state,
the history and the model's feature spec (a resume whose features differ,
say a list's `combiner` or a vocabulary, is refused: its weights would
silently mean other values). It is written to a temporary name, flushed
to disk and renamed over the previous one (`os.replace`, atomic on
POSIX), so a kill at any moment leaves the last good checkpoint whole.

The input position is `tffm.data.InputOrder`: each epoch's line order is
a function of `(seed, epoch)` only (not of how many passes this process
made), the readers cut that stream into batches of exactly `batch_size`
rows (after the holdout, blank and skipped lines are masked out), and a
resumed epoch skips the batches its first steps already trained on. So a
killed run restarted with the same command sees the same batches in the
same order as an uninterrupted one and ends with the same weights (up to
the float reduction order of the backend's kernels).
"""

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tffm.data.order import InputOrder
from tffm.features import serialize_feature

CHECKPOINT = "checkpoint.npz"
# Callback attributes that carry state across epochs (Keras' EarlyStopping,
# ReduceLROnPlateau, ModelCheckpoint); restored on resume.
_CALLBACK_STATE = (
    "wait",
    "best",
    "best_epoch",
    "stopped_epoch",
    "cooldown_counter",
)
# Feature options a resume may see change: numeric statistics, which a
# parallel scan may sum in another order (the last bits differ).
_FREE_OPTIONS = ("mean", "std")


class ResumeCheckpoint(keras.callbacks.Callback):
    """Atomic checkpoints of a fit that a restarted process resumes from.

    Put it last in the callback list (it restores the others' state after
    their own `on_train_begin` has reset it) and call `fit_resumable` below
    rather than `model.fit` (a resumed partial epoch needs its own `fit`
    call: Keras learns the number of batches of a streamed dataset from
    the first epoch it runs).

    Args:
        directory: str. Where `checkpoint.npz` goes (created if needed).
        every: int. Also checkpoint every `every` steps (0: only at the
            end of each epoch).
        order: `InputOrder` of the training input (or the `DeviceOrder`
            of rows kept on the device), or None (then a resumed epoch
            starts at its first batch, as with `BackupAndRestore`).
        rows_per_step: int. Rows one step reads from this process's
            stream (the global batch over the input pipelines): what the
            resume message reports.
        callbacks: the other callbacks of the fit, whose state is saved.
    """

    def __init__(
        self,
        directory: str,
        *,
        every: int = 0,
        order: InputOrder | None = None,
        rows_per_step: int = 0,
        callbacks: Sequence[Any] = (),
    ) -> None:
        super().__init__()
        self.directory = directory
        self.every = every
        self.order = order
        self.rows_per_step = rows_per_step
        self.callbacks = list(callbacks)
        self.history: dict[str, list[float]] = {}
        self.restart = False
        self._epoch = 0
        self._step = 0  # steps done in the current epoch
        self._first_step = 0  # steps a resumed epoch had done before
        self._resumed: dict[str, Any] | None = None
        self._metrics: list[np.ndarray] | None = None  # to add back
        # The model's `_features`, worked out as each fit begins.
        self._spec: dict[str, dict[str, Any]] | None = None

    @property
    def batch_period(self) -> int:
        """Steps between the batch hooks it needs (`tffm.train.device_fit`).

        A checkpoint every `every` steps; 0: at epoch ends only.
        """
        return self.every

    @property
    def path(self) -> str:
        return os.path.join(self.directory, CHECKPOINT)

    @property
    def initial_epoch(self) -> int:
        """The epoch a fit resumes at (0 when it starts afresh)."""
        if self._resumed is None:
            return 0
        return int(self._resumed["meta"]["epoch"])

    def state(self) -> dict[str, Any] | None:
        """The last checkpoint's metadata (epoch, step, ...), or None."""
        if not os.path.exists(self.path):
            return None
        with np.load(self.path) as saved:
            meta: dict[str, Any] = json.loads(bytes(saved["meta"]).decode())
        return meta

    def describe(self, epochs: int) -> str:
        """`resuming from ...: epoch E of N, after step S`, for the log."""
        meta = self.state()
        if meta is None:
            return ""
        if meta["finished"]:
            return (
                f"resuming from {self.path}: the fit had finished "
                f"({len(meta['history'].get('loss', []))} epochs); "
                "evaluating and saving"
            )
        where = f"epoch {meta['epoch'] + 1} of {epochs}"
        if meta["step"]:
            rows = meta["step"] * self.rows_per_step
            where += (
                f", after its step {meta['step']} (skipping the {rows:,} "
                "rows already trained on)"
            )
        else:
            where += ", from its start"
        return f"resuming from {self.path}: {where}"

    def finished_history(self, model: Any) -> dict[str, list[float]] | None:
        """A finished fit's history, its final weights put in `model`.

        None when the checkpoint holds no finished fit. A finished fit
        (killed before its outputs were saved) is not run again.
        """
        meta = self.state()
        if meta is None or not meta["finished"]:
            return None
        _check_features(meta, _features(model))
        _, arrays = _read(self.path)
        _assign(model.weights, arrays["weights"], "model")
        return {k: list(v) for k, v in meta["history"].items()}

    def clear(self) -> None:
        """Deletes the checkpoint (the run has finished and is saved)."""
        for name in (
            os.listdir(self.directory) if os.path.isdir(self.directory) else ()
        ):
            if name == CHECKPOINT or name.startswith(CHECKPOINT + ".tmp"):
                os.remove(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):  # only if nothing else is left
            os.rmdir(self.directory)

    # === Callback ===
    def on_train_begin(self, logs: Any = None) -> None:
        self.restart = False
        self._resumed = None
        self.history = {}
        self._spec = _features(self.model)
        if not os.path.exists(self.path):
            return
        meta, arrays = _read(self.path)
        _check_features(meta, self._spec)
        _assign(self.model.weights, arrays["weights"], "model")
        if self.model.optimizer is not None:
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            _assign(self.model.optimizer.variables, arrays["optimizer"], "opt")
        self.history = {k: list(v) for k, v in meta["history"].items()}
        for callback, state in zip(
            self.callbacks, meta["callbacks"], strict=True
        ):
            for name, value in state.items():
                setattr(callback, name, value)
            if "best_weights" in arrays and hasattr(callback, "best_weights"):
                callback.best_weights = arrays["best_weights"]
        self.model._initial_epoch = meta["epoch"]  # as BackupAndRestore
        self._resumed = {"meta": meta, "metrics": arrays.get("metrics")}

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch
        self._first_step = 0
        resumed = self._resumed
        if resumed is not None and resumed["meta"]["epoch"] == epoch:
            self._first_step = resumed["meta"]["step"]
            if self._first_step:
                self._metrics = resumed["metrics"]
        if self.order is not None:
            self.order.set(epoch, self._first_step)  # batches to skip
        self._step = self._first_step

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self._metrics is not None:
            # The compiled metrics exist once a step has run. Their state
            # is sums (Mean: total and count; AUC: confusion counts; RMSE),
            # so adding the saved sums gives the epoch's metrics as if it
            # had not been interrupted.
            self._add_metrics(self._metrics)
            self._metrics = None
        self._step = self._first_step + batch + 1
        if self.every and self._step % self.every == 0:
            self._save(self._epoch, self._step)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.model.stop_training:
            # Early stopping decided: `on_train_end` saves the final state
            # (after the best weights are restored), not this epoch's.
            return
        self._save(epoch + 1, 0)
        if self._first_step:
            # This epoch was resumed part-way, so this `fit` believes an
            # epoch has that many batches: `fit` (below) starts another.
            self.restart = True
            self.model.stop_training = True

    def on_train_end(self, logs: Any = None) -> None:
        if not self.restart:
            self._save(self._epoch + 1, 0, finished=True)

    def _add_metrics(self, saved: list[np.ndarray]) -> None:
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        variables = self.model.metrics_variables
        if len(variables) != len(saved):
            raise ValueError(
                "The resume checkpoint does not fit this model's metrics "
                f"({len(saved)} saved variables, {len(variables)} here). "
                "Start over with --no-resume."
            )
        for variable, value in zip(variables, saved, strict=True):
            current = keras.ops.convert_to_numpy(variable)
            variable.assign(current + value)

    # === Saving ===
    def _save(self, epoch: int, step: int, *, finished: bool = False) -> None:
        if hasattr(self.model, "jax_state_sync"):  # JAX keeps state aside
            self.model.jax_state_sync()
        meta = {
            "epoch": epoch,
            "step": step,
            "finished": finished,
            "features": self._spec,
            "history": self.history,
            "callbacks": [
                {
                    name: _plain(getattr(callback, name))
                    for name in _CALLBACK_STATE
                    if hasattr(callback, name)
                }
                for callback in self.callbacks
            ],
        }
        arrays: dict[str, Any] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        }
        groups = {
            "weights": self.model.weights,
            "optimizer": getattr(self.model.optimizer, "variables", []),
            "metrics": self.model.metrics_variables,
        }
        for group, variables in groups.items():
            for i, v in enumerate(variables):
                arrays[f"{group}/{i}"] = keras.ops.convert_to_numpy(v)
        for callback in self.callbacks:
            best = getattr(callback, "best_weights", None)
            if best is not None:
                for i, w in enumerate(best):
                    arrays[f"best_weights/{i}"] = np.asarray(w)
        write_atomic(self.path, arrays)


def fit_resumable(
    model: Any,
    dataset: Any,
    *,
    checkpoint: ResumeCheckpoint,
    epochs: int,
    callbacks: Sequence[Any],
    **kwargs: Any,
) -> dict[str, list[float]]:
    """`model.fit` that resumes from `checkpoint`; returns the full history.

    A finished fit (killed before its outputs were saved) is not run again:
    its final weights and history come from the checkpoint.
    """
    finished = checkpoint.finished_history(model)
    if finished is not None:
        return finished
    checkpoint.callbacks = list(callbacks)
    while True:
        model.fit(
            dataset,
            epochs=epochs,
            callbacks=[*callbacks, checkpoint],
            **kwargs,
        )
        if not checkpoint.restart:
            return checkpoint.history


def write_atomic(path: str, arrays: dict[str, Any]) -> None:
    """Writes an `.npz` so that `path` is always the old or the new file.

    The data goes to `<path>.tmp-<pid>`, is flushed to disk, then renamed
    over `path`; the directory is synced so the rename survives a crash.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    if sys.platform != "win32":
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read(path: str) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """A checkpoint's metadata and its arrays, grouped and in order."""
    with np.load(path) as saved:
        meta = json.loads(bytes(saved["meta"]).decode())
        groups: dict[str, dict[int, np.ndarray]] = {}
        for key in saved.files:
            if "/" in key:
                group, index = key.split("/")
                groups.setdefault(group, {})[int(index)] = saved[key]
    arrays = {g: [v[i] for i in sorted(v)] for g, v in groups.items()}
    arrays.setdefault("weights", [])
    arrays.setdefault("optimizer", [])
    return meta, arrays


def _features(model: Any) -> dict[str, dict[str, Any]] | None:
    """`{name: options}` of the model's feature spec, as JSON reads it.

    A vocabulary is its SHA-256 (a million values would be megabytes in
    every checkpoint).
    """
    features = getattr(model, "features", None)
    if not features:  # not a tffm model with a feature spec
        return None
    spec: dict[str, dict[str, Any]] = json.loads(
        json.dumps({f.name: serialize_feature(f) for f in features})
    )
    for options in spec.values():
        if options.get("vocabulary") is not None:
            text = json.dumps(options["vocabulary"]).encode()
            options["vocabulary"] = hashlib.sha256(text).hexdigest()
    return spec


def _check_features(
    meta: dict[str, Any], here: dict[str, dict[str, Any]] | None
) -> None:
    """Refuses a checkpoint trained on other features than `here`."""
    saved = meta.get("features")
    if saved is None or here is None:  # an older checkpoint, or no spec
        return
    for name in sorted(saved.keys() | here.keys()):
        if name not in saved or name not in here:
            where = "here only" if name in here else "in the checkpoint only"
            differ = [f"the feature is {where}"]
        else:
            differ = [
                f"{key} {saved[name].get(key)!r} there, "
                f"{here[name].get(key)!r} here"
                if key != "vocabulary"
                else "another vocabulary"
                for key in sorted(saved[name].keys() | here[name].keys())
                if key not in _FREE_OPTIONS
                and saved[name].get(key) != here[name].get(key)
            ]
        if differ:
            raise ValueError(
                f"Feature {name!r}: the resume checkpoint was trained on "
                f"other features ({'; '.join(differ)}). Were the data or "
                "the column options changed? Start over with --no-resume."
            )


def _assign(
    variables: Sequence[Any], values: list[np.ndarray], what: str
) -> None:
    if len(variables) != len(values):
        raise ValueError(
            f"The resume checkpoint does not fit this model ({what}: "
            f"{len(values)} saved variables, {len(variables)} here). Was "
            "the command changed? Start over with --no-resume."
        )
    for variable, value in zip(variables, values, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(
                f"The resume checkpoint does not fit this model: "
                f"{variable.path} has shape {tuple(variable.shape)}, the "
                f"checkpoint {value.shape}. Start over with --no-resume."
            )
        variable.assign(value)


def _plain(value: Any) -> Any:
    """A callback attribute as JSON (numpy scalars, inf)."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "numpy"):
        return np.asarray(value).item()
    return value
