"""Prometheus metrics of a `tffm serve` process, cheap to update.

Counters and histograms are plain dicts of lists behind one lock (an
update is a dict lookup, a `bisect` and two increments: no per-request
label objects, no loop over buckets), rendered in Prometheus' text
exposition format (version 0.0.4) when scraped.
"""

import bisect
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

# Request latency buckets (seconds): 100 us .. 10 s.
_LATENCY = (
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0,
)  # fmt: skip
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Request count, latency histogram, batch sizes and errors per model.

    Names follow Prometheus conventions under `tffm_serving_`; labels:
    `model`, `api` (`predict`, `metadata`, `status`, `reload`, and the
    Open Inference Protocol's `v2_infer`, `v2_metadata`, `v2_ready`),
    `transport` (`rest`, `grpc`) and `code` (a TF Serving status code
    name, `OK` on success).
    Callers pass only bounded label values (`Service.model_label`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        # (model, api, transport) -> [bucket counts..., sum, count]
        self._latency: dict[tuple[str, str, str], list[float]] = {}
        self._batch: dict[str, list[float]] = {}
        self._share: _Share | None = None

    def share(self, directory: str, interval: float = 1.0) -> None:
        """Adds up the metrics of every worker process sharing `directory`.

        Every `interval` seconds this process writes its counts there (a
        thread; never on a request's path); `render` adds the latest counts
        of the other processes to its own, so a scrape of any worker sees
        the whole server (up to `interval` seconds old for the others).
        """
        self._share = _Share(self, directory, interval)

    def snapshot(self) -> dict[str, Any]:
        """This process's counts, as JSON-ready lists."""
        with self._lock:
            return {
                "requests": [[*k, v] for k, v in self._requests.items()],
                "errors": [[*k, v] for k, v in self._errors.items()],
                "latency": [[*k, list(v)] for k, v in self._latency.items()],
                "batch": [[k, list(v)] for k, v in self._batch.items()],
            }

    def observe(
        self, model: str, api: str, transport: str, code: str, seconds: float
    ) -> None:
        """Records one answered request."""
        bucket = bisect.bisect_left(_LATENCY, seconds)
        key = (model, api, transport)
        with self._lock:
            counts = self._requests
            request = (model, api, transport, code)
            counts[request] = counts.get(request, 0) + 1
            histogram = self._latency.get(key)
            if histogram is None:
                histogram = self._latency[key] = [0.0] * (len(_LATENCY) + 3)
            histogram[bucket] += 1
            histogram[-2] += seconds
            histogram[-1] += 1
            if code != "OK":
                error = (model, code)
                self._errors[error] = self._errors.get(error, 0) + 1

    def observe_batch(self, model: str, rows: int) -> None:
        """Records one model run of `rows` rows."""
        bucket = bisect.bisect_left(_BATCH, rows)
        with self._lock:
            histogram = self._batch.get(model)
            if histogram is None:
                histogram = self._batch[model] = [0.0] * (len(_BATCH) + 3)
            histogram[bucket] += 1
            histogram[-2] += rows
            histogram[-1] += 1

    def render(self) -> bytes:
        """The text exposition format."""
        with self._lock:
            requests: dict[tuple[str, ...], float] = {
                k: v for k, v in self._requests.items()
            }
            errors: dict[tuple[str, ...], float] = {
                k: v for k, v in self._errors.items()
            }
            latency: dict[tuple[str, ...], list[float]] = {
                k: list(v) for k, v in self._latency.items()
            }
            batch: dict[tuple[str, ...], list[float]] = {
                (k,): list(v) for k, v in self._batch.items()
            }
        for other in self._share.others() if self._share else []:
            _add(requests, other["requests"])
            _add(errors, other["errors"])
            _add_lists(latency, other["latency"])
            _add_lists(batch, other["batch"])
        lines: list[str] = []
        _counter(
            lines,
            "tffm_serving_requests_total",
            "Requests answered, by model, API, transport and status code.",
            ("model", "api", "transport", "code"),
            requests,
        )
        _counter(
            lines,
            "tffm_serving_errors_total",
            "Requests answered with an error, by model and status code.",
            ("model", "code"),
            errors,
        )
        _histogram(
            lines,
            "tffm_serving_request_latency_seconds",
            "Time from request received to response ready.",
            ("model", "api", "transport"),
            _LATENCY,
            latency,
        )
        _histogram(
            lines,
            "tffm_serving_batch_size",
            "Rows per model run (after server-side batching).",
            ("model",),
            _BATCH,
            batch,
        )
        return ("\n".join(lines) + "\n").encode()


class _Share:
    """Writes one process's snapshot to a shared directory; reads the rest."""

    def __init__(self, metrics: Metrics, directory: str, interval: float):
        self.metrics = metrics
        self.directory = directory
        self.path = os.path.join(directory, f"worker-{os.getpid()}.json")
        self.interval = interval
        thread = threading.Thread(
            target=self._loop, daemon=True, name="metrics"
        )
        thread.start()

    def others(self) -> list[dict[str, Any]]:
        found = []
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry)
            if path == self.path or not entry.endswith(".json"):
                continue
            try:
                with open(path) as f:
                    found.append(json.load(f))
            except (OSError, ValueError):  # being replaced, or gone
                continue
        return found

    def _loop(self) -> None:
        while True:
            staging = self.path + ".tmp"
            try:
                with open(staging, "w") as f:
                    json.dump(self.metrics.snapshot(), f)
                os.replace(staging, self.path)  # readers see whole files
            except OSError:  # the directory went away: the server stops
                return
            time.sleep(self.interval)


def _add(into: dict[tuple[str, ...], float], rows: list[list[Any]]) -> None:
    for *key, value in rows:
        into[tuple(key)] = into.get(tuple(key), 0) + value


def _add_lists(
    into: dict[tuple[str, ...], list[float]], rows: list[list[Any]]
) -> None:
    for *key, values in rows:
        mine = into.setdefault(tuple(key), [0.0] * len(values))
        for i, value in enumerate(values):
            mine[i] += value


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(
        f'{n}="{_escape(v)}"'
        for n, v in sorted(zip(names, values, strict=True))
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value))


def _counter(
    lines: list[str],
    name: str,
    help_text: str,
    names: tuple[str, ...],
    values: Mapping[Any, float],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    for key in sorted(values):
        lines.append(f"{name}{{{_labels(names, key)}}} {_number(values[key])}")


def _histogram(
    lines: list[str],
    name: str,
    help_text: str,
    names: tuple[str, ...],
    bounds: tuple[float, ...],
    values: Mapping[Any, list[float]],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for key in sorted(values):
        counts = values[key]
        labels = _labels(names, key)
        cumulative = 0.0
        for bound, count in zip(
            [*map(_number, bounds), "+Inf"], counts[:-2], strict=True
        ):
            cumulative += count
            lines.append(
                f'{name}_bucket{{{labels},le="{bound}"}} {_number(cumulative)}'
            )
        lines.append(f"{name}_count{{{labels}}} {_number(counts[-1])}")
        lines.append(f"{name}_sum{{{labels}}} {_number(counts[-2])}")
