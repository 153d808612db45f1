"""Which models and versions are served: discovery, loading, status.

A model's versions are numbered directories under its base path, each
holding the raw-input ONNX file as `model.onnx` (TF Serving's layout, with
`model.onnx` where TF Serving reads `saved_model.pb`):

```
<base_path>/1/model.onnx
<base_path>/2/model.onnx
```

A single `.onnx` file may be served too (its version from its metadata).
A poller thread rescans the base paths every `poll_seconds` (TF Serving's
`--file_system_poll_wait_seconds`): new version directories are loaded,
warmed up and only then served; versions the policy no longer wants are
unloaded (state END), but only once a wanted version is serving: a new
version that fails to load leaves the serving one in place (TF Serving's
availability-preserving policy), and its status says why (state END, the
error). A file that fails to load is retried when it changes.
"""

import concurrent.futures
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from serving import fingerprint
from serving.batching import Batcher
from serving.errors import invalid
from serving.errors import not_found
from serving.model_config import BatchingParameters
from serving.model_config import ModelConfig
from serving.onnx_predictor import OnnxPredictor
from tffm import constants
from tffm.features import Feature

MODEL_FILE = constants.ONNX_MODEL_FILE
LOG = logging.getLogger("tffm.serve")


@dataclasses.dataclass
class Servable:
    """One loaded model version."""

    name: str
    version: int
    path: str
    predictor: OnnxPredictor
    run: Callable[
        [dict[str, np.ndarray], int], "concurrent.futures.Future[Any]"
    ]
    batcher: Batcher | None = None

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.predictor.features


@dataclasses.dataclass
class _VersionState:
    state: str  # LOADING, AVAILABLE, END
    error: str = ""
    stamp: tuple[float, int] | None = None  # (mtime, size) of a failed file


class ModelManager:
    """Loads the configured models' versions and keeps them current.

    Args:
        models: list of `ModelConfig`; a `base_path` ending in `.onnx` is a
            single file.
        executor: thread pool that runs unbatched requests.
        threads: int. onnxruntime intra-op threads per session.
        batching: `BatchingParameters`, or None for no batching.
        on_batch: optional callable `(model_name, batch_size)` (metrics).
    """

    def __init__(
        self,
        models: list[ModelConfig],
        *,
        executor: concurrent.futures.Executor,
        threads: int = 1,
        batching: BatchingParameters | None = None,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.models = {m.name: m for m in models}
        self.executor = executor
        self.threads = threads
        self.batching = batching
        self.on_batch = on_batch
        self._servables: dict[tuple[str, int], Servable] = {}
        self._states: dict[str, dict[int, _VersionState]] = {
            m.name: {} for m in models
        }
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # one poll or reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = False

    # === Loading ===

    def poll(self) -> None:
        """One scan of every base path: load new versions, unload old ones."""
        with self._polling:
            self._poll()

    def reload(self, models: list[ModelConfig]) -> dict[str, str]:
        """Serves `models` instead of the configured ones, now.

        TF Serving's `HandleReloadConfigRequest`: new models load before it
        returns, models left out are unloaded, the others follow their new
        policy (a version already loaded stays keyed by its number).

        Returns:
            `failures()` after the reload: `{model: error}`.
        """
        with self._polling:
            for name in set(self.models) - {m.name for m in models}:
                for servable in self.servables():
                    if servable.name == name:
                        self._unload(servable)
                del self._states[name]
            for model in models:
                self._states.setdefault(model.name, {})
            self.models = {m.name: m for m in models}
            self._poll()
        return self.failures()

    def _poll(self) -> None:
        for model in self.models.values():
            on_disk = _discover(model)
            wanted = model.wanted(sorted(on_disk))
            for version in wanted:
                if (model.name, version) not in self._servables:
                    self._load(model, version, on_disk[version])
            serving = any((model.name, v) in self._servables for v in wanted)
            for (name, version), servable in list(self._servables.items()):
                if name == model.name and version not in wanted and serving:
                    self._unload(servable)
        self.ready = all(
            any(s.state == "AVAILABLE" for s in states.values())
            for states in self._states.values()
        )

    def failures(self) -> dict[str, str]:
        """`{model: error}` of models with no version serving and a failed one.

        What start-up cannot get past: TF Serving does not start without
        its models either.
        """
        failed = {}
        for name, states in self._states.items():
            if any(s.state == "AVAILABLE" for s in states.values()):
                continue
            errors = [s.error for _, s in sorted(states.items()) if s.error]
            if errors:
                failed[name] = errors[-1]
        return failed

    def start(self, poll_seconds: float) -> None:
        """Loads what is there now, then polls every `poll_seconds` (> 0)."""
        self.poll()
        if poll_seconds > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, args=(poll_seconds,), daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stops polling and closes the batchers (queued work finishes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for servable in list(self._servables.values()):
            if servable.batcher is not None:
                servable.batcher.close()

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 (keep polling; say why)
                LOG.exception("model poll failed")

    def _load(self, model: ModelConfig, version: int, path: str) -> None:
        states = self._states[model.name]
        stamp = _stamp(path)
        old = states.get(version)
        if old is not None and old.stamp == stamp and old.error:
            return  # failed before and unchanged: wait for a new file
        states[version] = _VersionState("LOADING")
        try:
            predictor = OnnxPredictor(path, threads=self.threads)
            for size in (1, 8):  # warmup: the whole path, before serving
                predictor.predict(warmup_batch(predictor.features, size))
        except Exception as error:  # noqa: BLE001 (status says why)
            message = f"Loading {path}: {type(error).__name__}: {error}"
            LOG.error(message)
            states[version] = _VersionState("END", message, stamp)
            return
        batcher = None
        run: Callable[..., Any]
        if self.batching is not None:
            name = model.name
            on_batch = self.on_batch
            batcher = Batcher(
                predictor.run,
                self.batching,
                pad_values(predictor.features),
                on_batch=(
                    (lambda rows: on_batch(name, rows)) if on_batch else None
                ),
            )
            run = batcher.submit
        else:

            def run(feeds: dict[str, np.ndarray], size: int) -> Any:
                return self.executor.submit(predictor.run, feeds)

        servable = Servable(model.name, version, path, predictor, run, batcher)
        with self._lock:
            self._servables[(model.name, version)] = servable
        states[version] = _VersionState("AVAILABLE")
        LOG.info("serving %s version %d from %s", model.name, version, path)

    def _unload(self, servable: Servable) -> None:
        with self._lock:
            del self._servables[(servable.name, servable.version)]
        if servable.batcher is not None:
            servable.batcher.close()
        self._states[servable.name][servable.version] = _VersionState("END")
        LOG.info("unloaded %s version %d", servable.name, servable.version)

    # === Lookup ===

    def resolve(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Servable:
        """The servable a request names (TF Serving's errors otherwise)."""
        if version is not None and label is not None:
            raise invalid(
                f"Both model version ({version}) and model version label "
                f"({label}) cannot be supplied."
            )
        if label is not None:
            labels = self.models[name].labels if name in self.models else {}
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labels[label]
        with self._lock:
            if version is not None:
                servable = self._servables.get((name, version))
                if servable is None:
                    raise not_found(
                        f"Servable not found for request: "
                        f"Specific({name}, {version})"
                    )
                return servable
            versions = [v for (n, v) in self._servables if n == name]
            if not versions:
                raise not_found(
                    f"Servable not found for request: Latest({name})"
                )
            return self._servables[(name, max(versions))]

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[tuple[int, str, str]]:
        """`[(version, state, error_message)]`, as GetModelStatus lists."""
        if label is not None:
            version = self.resolve(name, label=label).version
        states = self._states.get(name, {})
        if version is not None:
            if version not in states:
                raise not_found(
                    f"Could not find version {version} of model {name}"
                )
            state = states[version]
            return [(version, state.state, state.error)]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return [(v, s.state, s.error) for v, s in sorted(states.items())]

    def servables(self) -> list[Servable]:
        with self._lock:
            return list(self._servables.values())


def single_file_model(path: str, name: str) -> ModelConfig:
    """A `ModelConfig` serving one `.onnx` file (its version from metadata)."""
    return ModelConfig(name=name, base_path=os.path.abspath(path))


def warmup_batch(features: tuple[Feature, ...], size: int) -> dict[str, Any]:
    """Raw values for warmup: every feature missing (all code paths run)."""
    batch: dict[str, Any] = {}
    for feature in features:
        missing: Any = {"string": "", "int64": -1, "float32": float("nan")}[
            feature.dtype
        ]
        row = [missing, missing] if feature.shape else missing
        batch[feature.name] = [row] * size
    return batch


def pad_values(features: tuple[Feature, ...]) -> dict[str, Any]:
    """Per ONNX input, the feed value of a missing list entry."""
    empty = int(fingerprint.fingerprint64([""])[0])
    values: dict[str, Any] = {}
    for feature in features:
        if getattr(feature, "hash_bins", None):
            values[feature.name] = empty
        else:
            values[feature.name] = {"string": "", "int64": -1}.get(
                feature.dtype, 0.0
            )
    return values


def _discover(model: ModelConfig) -> dict[int, str]:
    """`{version: onnx path}` found on disk for `model`."""
    base = model.base_path
    if base.endswith(".onnx"):
        if not os.path.isfile(base):
            return {}
        return {_file_version(base): base}
    try:
        entries = os.listdir(base)
    except OSError:
        return {}
    found = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        path = os.path.join(base, entry, MODEL_FILE)
        if os.path.isfile(path):
            found[int(entry)] = path
        elif os.path.isfile(os.path.join(base, entry, "saved_model.pb")):
            LOG.debug(
                "%s holds a SavedModel but no %s; skipped",
                os.path.join(base, entry),
                MODEL_FILE,
            )
    return found


_VERSIONS: dict[tuple[str, tuple[float, int] | None], int] = {}


def _file_version(path: str) -> int:
    """A single file's version, from its metadata (cached per file stamp)."""
    key = (path, _stamp(path))
    if key not in _VERSIONS:
        _VERSIONS[key] = _read_version(path)
    return _VERSIONS[key]


def _read_version(path: str) -> int:
    import onnxruntime as ort  # deferred: onnxruntime

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    try:
        session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
    except Exception:  # noqa: BLE001 (the load itself reports it)
        return 1
    metadata = session.get_modelmeta().custom_metadata_map
    return int(metadata.get(constants.ONNX_VERSION, "1"))


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime, info.st_size)
