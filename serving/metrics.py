"""Prometheus metrics of a `tffm serve` process (its own registry)."""

import prometheus_client

# Request latency buckets (seconds): 100 us .. 10 s.
_LATENCY = (
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0,
)  # fmt: skip
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """Request count, latency histogram, batch sizes and errors per model.

    Names follow Prometheus conventions under `tffm_serving_`; labels:
    `model`, `api` (`predict`, `metadata`, `status`), `transport` (`rest`,
    `grpc`) and `code` (a TF Serving status code name, `OK` on success).
    """

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "tffm_serving_requests",
            "Requests answered, by model, API, transport and status code.",
            ["model", "api", "transport", "code"],
            registry=self.registry,
        )
        self.errors = prometheus_client.Counter(
            "tffm_serving_errors",
            "Requests answered with an error, by model and status code.",
            ["model", "code"],
            registry=self.registry,
        )
        self.latency = prometheus_client.Histogram(
            "tffm_serving_request_latency_seconds",
            "Time from request received to response ready.",
            ["model", "api", "transport"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.batch_size = prometheus_client.Histogram(
            "tffm_serving_batch_size",
            "Rows per model run (after server-side batching).",
            ["model"],
            buckets=_BATCH,
            registry=self.registry,
        )

    def observe(
        self, model: str, api: str, transport: str, code: str, seconds: float
    ) -> None:
        """Records one answered request."""
        self.requests.labels(model, api, transport, code).inc()
        self.latency.labels(model, api, transport).observe(seconds)
        if code != "OK":
            self.errors.labels(model, code).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return prometheus_client.generate_latest(self.registry)
