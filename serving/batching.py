"""Server-side batching with TF Serving's batching parameters.

Requests (already turned into ONNX feeds) join the open batch of their
model; worker threads (`num_batch_threads`) take the oldest batch when it is
full, when `batch_timeout_micros` has passed since it opened, or when a newer
batch exists, concatenate the feeds, run the model once and hand each
request its rows. As in TF Serving's shared batch scheduler, a request
larger than `max_batch_size` is refused (INVALID_ARGUMENT) and a request
that would need more than `max_enqueued_batches` batches is refused at once
(UNAVAILABLE, "The batch scheduling queue to which this task was submitted
is full", TF Serving's own status and wording): back-pressure, never a hang.

A request whose caller gave up (its future cancelled: a gRPC or REST
deadline passed) is dropped from its batch when the batch starts; the
others are answered, and a worker thread never dies of one request.
"""

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import ServingError
from serving.errors import invalid
from serving.model_config import BatchingParameters

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
LOG = logging.getLogger("tffm.serve")


class _Task:
    __slots__ = ("feeds", "size", "future")

    def __init__(self, feeds: Feeds, size: int) -> None:
        self.feeds = feeds
        self.size = size
        self.future: concurrent.futures.Future[Outputs] = (
            concurrent.futures.Future()
        )


class _Batch:
    __slots__ = ("tasks", "rows", "opened")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.rows = 0
        self.opened = time.monotonic()


class Batcher:
    """Batches feeds for one model version and runs them on worker threads.

    Args:
        run: callable `feeds -> {output: array}` (the ONNX session).
        params: `BatchingParameters`.
        pad_values: `{input_name: value}` used to pad 2-D (list) inputs of
            different lengths to one width; padding is masked by the model.
        on_batch: optional callable `(batch_size) -> None` (metrics).
    """

    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        params: BatchingParameters,
        pad_values: Mapping[str, Any],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run = run
        self.params = params
        self.pad_values = dict(pad_values)
        self.on_batch = on_batch
        self._batches: collections.deque[_Batch] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"batch-{i}")
            for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, feeds: Feeds, size: int
    ) -> "concurrent.futures.Future[Outputs]":
        """Queues one request's feeds; the future resolves to its outputs.

        Raises:
            ServingError: INVALID_ARGUMENT when `size > max_batch_size`;
                UNAVAILABLE when the queue is full or the batcher closed.
        """
        limit = self.params.max_batch_size
        if size > limit:
            raise invalid(
                f"Task size {size} is larger than maximum input batch size "
                f"{limit}"
            )
        task = _Task(feeds, size)
        with self._condition:
            if self._closed:
                raise ServingError("UNAVAILABLE", "The server is shutting down")
            if not self._batches or self._batches[-1].rows + size > limit:
                if len(self._batches) >= self.params.max_enqueued_batches:
                    raise ServingError(
                        "UNAVAILABLE",
                        "The batch scheduling queue to which this task was "
                        "submitted is full",
                    )
                self._batches.append(_Batch())
            batch = self._batches[-1]
            batch.tasks.append(task)
            batch.rows += size
            self._condition.notify()
        return task.future

    def close(self) -> None:
        """Runs what is queued, then stops the worker threads."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()

    def _next_batch(self) -> _Batch | None:
        timeout = self.params.batch_timeout_micros / 1e6
        with self._condition:
            while True:
                if self._batches:
                    batch = self._batches[0]
                    wait = batch.opened + timeout - time.monotonic()
                    if (
                        batch.rows >= self.params.max_batch_size
                        or len(self._batches) > 1
                        or wait <= 0
                        or self._closed
                    ):
                        return self._batches.popleft()
                    self._condition.wait(wait)
                elif self._closed:
                    return None
                else:
                    self._condition.wait()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception:  # noqa: BLE001 (the thread must live on)
                LOG.exception("batch of %d rows failed", batch.rows)
                _fail(batch.tasks, ServingError("INTERNAL", "Batch failed"))

    def _run_batch(self, batch: _Batch) -> None:
        # A cancelled future (its caller gave up) is dropped here; once a
        # future runs it cannot be cancelled, so setting it cannot fail.
        live = [
            t for t in batch.tasks if t.future.set_running_or_notify_cancel()
        ]
        if not live:
            return
        if len(live) < len(batch.tasks):
            batch.tasks = live
            batch.rows = sum(t.size for t in live)
        try:
            outputs = self.run(self._concatenate(batch))
        except Exception as error:  # noqa: BLE001 (each request hears it)
            _fail(live, ServingError("INTERNAL", f"Running the model: {error}"))
            return
        if self.on_batch is not None:
            self.on_batch(batch.rows)
        offset = 0
        for task in live:
            end = offset + task.size
            task.future.set_result(
                {k: v[offset:end] for k, v in outputs.items()}
            )
            offset = end

    def _concatenate(self, batch: _Batch) -> dict[str, np.ndarray]:
        tasks = batch.tasks
        if len(tasks) == 1:
            feeds = dict(tasks[0].feeds)
        else:
            feeds = {
                name: _stack([t.feeds[name] for t in tasks], pad)
                for name, pad in self.pad_values.items()
            }
        sizes = self.params.allowed_batch_sizes
        if sizes:  # pad rows up to the next allowed size (first row repeated)
            target = next(s for s in sizes if s >= batch.rows)
            if target > batch.rows:
                feeds = {
                    name: np.concatenate(
                        [value, np.repeat(value[:1], target - batch.rows, 0)]
                    )
                    for name, value in feeds.items()
                }
        return feeds


def _fail(tasks: list[_Task], error: ServingError) -> None:
    for task in tasks:
        if not task.future.done():
            task.future.set_exception(error)


def _stack(arrays: list[np.ndarray], pad: Any) -> np.ndarray:
    """Concatenates along the batch axis; 2-D arrays padded to one width."""
    if arrays[0].ndim == 2:
        width = max(a.shape[1] for a in arrays)
        arrays = [
            a
            if a.shape[1] == width
            else np.concatenate(
                [a, np.full((a.shape[0], width - a.shape[1]), pad, a.dtype)],
                axis=1,
            )
            for a in arrays
        ]
    return np.concatenate(arrays)
