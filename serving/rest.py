"""TF Serving's REST API as an ASGI app, served by uvicorn.

Routes (TF Serving's `http_rest_api_util.cc` regexes, case-insensitive):
- `POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict`
  (`:classify` / `:regress` answer that the model has no such signature);
- `GET /v1/models/{name}[/versions/{v}|/labels/{l}]`: model status;
- `GET /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata`;
- any other method or path under `/v1/`: 400 `Malformed request: ...`.
The Open Inference Protocol's `/v2` routes are `serving.v2_rest`'s.
Beside them: `GET /healthz` (liveness), `GET /readyz` (readiness: 200 once
every model has a version loaded and warmed up, 503 before and while
shutting down), `GET /metrics` and `/monitoring/prometheus/metrics`
(Prometheus; with `--monitoring_config_file`, its path only); another
method on these gets 405. Any other path outside `/v1/` and `/v2` gets
404 whatever the method, as TF Serving's HTTP server answers requests its
`/v1/.*` dispatcher ignores. Every error is `{"error": "..."}` with TF
Serving's status code, unexpected failures (onnxruntime's) too:
500 `INTERNAL`, logged and counted. Bodies over `max_body_bytes` get 413
without being read; a body that stalls longer than `read_timeout` gets
408; a prediction not done within `request_timeout` gets 504
`DEADLINE_EXCEEDED` (TF Serving's `--rest_api_timeout_in_ms`).
"""

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf import json_format

from serving import metrics
from serving import protos
from serving import rest_json
from serving import v2_rest
from serving.access_log import AccessLog
from serving.errors import ServingError
from serving.errors import invalid
from serving.manager import Servable
from serving.service import SIGNATURE_DEF
from serving.service import Service

_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)
_MODEL = re.compile(r"/v1/models/([^/:]+)", re.IGNORECASE)
_JSON = [(b"content-type", b"application/json")]
_PROBES = frozenset(("/healthz", "/livez", "/readyz"))
LOG = logging.getLogger("tffm.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class RestApp:
    """The ASGI application.

    Args:
        service: the shared `Service`.
        max_body_bytes: int. Larger request bodies get HTTP 413.
        read_timeout: float. Seconds a body may take between chunks.
        request_timeout: float. Seconds a prediction may take once its
            body is read (then 504 DEADLINE_EXCEEDED).
        access_log: an `AccessLog`, or None for none.
        metrics_paths: the paths serving Prometheus metrics (TF Serving's
            `--monitoring_config_file` names one).
    """

    def __init__(
        self,
        service: Service,
        *,
        max_body_bytes: int,
        read_timeout: float,
        request_timeout: float = 30.0,
        access_log: AccessLog | None = None,
        metrics_paths: tuple[str, ...] = (
            "/metrics",
            "/monitoring/prometheus/metrics",
        ),
    ) -> None:
        self.service = service
        self.metrics_paths = frozenset(metrics_paths)
        self._operations_paths = _PROBES | self.metrics_paths
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout
        self.access_log = access_log
        self.shutting_down = False

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        model, api, code = "", "other", "OK"
        try:
            if path.lower().startswith("/v1/"):
                named = _MODEL.match(path)
                model = named.group(1) if named else ""
                model, api, status, body = await self._tf_serving(
                    scope, receive, method, path
                )
            elif path == "/v2" or path.startswith("/v2/"):
                model, api = v2_rest.labels(path)  # errors are counted too
                model, api, status, body, headers = await v2_rest.handle(
                    self, scope, receive, method, path
                )
                await _respond(send, status, body, headers)
                self._observe(model, api, "OK", start)
                self._log(scope, status, len(body), start, model, "OK")
                return
            else:
                status, body, headers = self._operations(method, path)
                await _respond(send, status, body, headers)
                self._log(scope, status, len(body), start, "", "")
                return
        except ServingError as error:
            code, status = error.code, error.http_status
            body = _error(error.message)
        except _BodyTooLarge:
            code, status = "RESOURCE_EXHAUSTED", 413
            body = _error(
                f"Request body exceeds the limit of {self.max_body_bytes} "
                "bytes (--rest_api_max_body_bytes)"
            )
        except TimeoutError:
            code, status = "DEADLINE_EXCEEDED", 408
            body = _error(
                f"Request body not received within {self.read_timeout:g} s"
            )
        except Exception as error:  # noqa: BLE001 (answered as TF Serving)
            LOG.exception("%s %s failed", method, path)
            code, status = "INTERNAL", 500
            body = _error(f"Internal: {type(error).__name__}: {error}")
        await _respond(send, status, body, _JSON)
        self._observe(model, api, code, start)
        self._log(scope, status, len(body), start, model, code)

    def _observe(self, model: str, api: str, code: str, start: float) -> None:
        if model:
            self.service.metrics.observe(
                self.service.model_label(model),
                api,
                "rest",
                code,
                time.perf_counter() - start,
            )

    def _log(
        self,
        scope: Scope,
        status: int,
        size: int,
        start: float,
        model: str,
        code: str,
    ) -> None:
        if self.access_log is None:
            return
        client = scope.get("client") or ("", 0)
        self.access_log.rest(
            f"{client[0]}:{client[1]}",
            scope["method"],
            scope["path"],
            status,
            code or ("OK" if status < 400 else ""),
            model,
            size,
            time.perf_counter() - start,
        )

    async def _tf_serving(
        self, scope: Scope, receive: Receive, method: str, path: str
    ) -> tuple[str, str, int, bytes]:
        match = _PREDICT.fullmatch(path) if method == "POST" else None
        if match:
            name, version, label, verb = match.groups()
            body = await self.read_body(scope, receive)
            if verb.lower() != "predict":
                raise invalid(
                    f"Expected {verb.lower()} signature method_name to be "
                    f"tensorflow/serving/{verb.lower()}. Was: "
                    "tensorflow/serving/predict"
                )
            return (
                name,
                "predict",
                200,
                await self._predict(name, _version(version), label, body),
            )
        match = _STATUS.fullmatch(path) if method == "GET" else None
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid("Missing model name in request.")
            if metadata:
                response = self.service.metadata(
                    name, _version(version), label, [SIGNATURE_DEF]
                )
                return name, "metadata", 200, _metadata_json(response)
            response = self.service.status(name, _version(version), label)
            text = json_format.MessageToJson(
                response, always_print_fields_with_no_presence=True
            )
            return name, "status", 200, text.encode()
        raise invalid(f"Malformed request: {method} {path}")

    async def _predict(
        self, name: str, version: int | None, label: str | None, body: bytes
    ) -> bytes:
        document = rest_json.parse_body(body)
        servable = self.service.manager.resolve(name, version, label)
        rest_json.check_signature(document)
        raw, rows = rest_json.columns_from_request(document, servable.features)
        outputs = await self.outputs(servable, raw)
        return rest_json.response_json(outputs, rows)

    async def outputs(
        self, servable: Servable, raw: dict[str, Any]
    ) -> dict[str, Any]:
        """Runs a prediction of raw columns within `request_timeout`."""
        # onnxruntime runs on a pool thread (or the batcher's), so the loop
        # reads and answers other requests meanwhile.
        future = self.service.submit(servable, "", raw)
        try:
            async with asyncio.timeout(self.request_timeout):
                outputs = await asyncio.wrap_future(future)
        except TimeoutError:  # the future is cancelled: a queued task drops
            raise ServingError(
                "DEADLINE_EXCEEDED",
                "Deadline Exceeded: the prediction did not finish within "
                f"{self.request_timeout * 1000:g} ms "
                "(--rest_api_timeout_in_ms)",
            ) from None
        return outputs

    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise invalid("Invalid Content-Length header") from None
                if declared > self.max_body_bytes:
                    raise _BodyTooLarge()
        chunks = []
        size = 0
        more = True
        loop = asyncio.get_running_loop()
        # One timer for the whole body, pushed back at every chunk (no task
        # per read, as `wait_for` would create).
        async with asyncio.timeout(self.read_timeout) as deadline:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ServingError("CANCELLED", "Client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _BodyTooLarge()
                chunks.append(chunk)
                more = message.get("more_body", False)
                if more:
                    deadline.reschedule(loop.time() + self.read_timeout)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _operations(
        self, method: str, path: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if path not in self._operations_paths:
            return 404, _error(f"Not found: {method} {path}"), _JSON
        if method not in ("GET", "HEAD"):
            return (
                405,
                _error(f"Method {method} not allowed on {path}"),
                [*_JSON, (b"allow", b"GET, HEAD")],
            )
        manager = self.service.manager
        if path in ("/healthz", "/livez"):
            return 200, b'{"status": "alive"}', _JSON
        if path == "/readyz":
            if manager.ready and not self.shutting_down:
                return 200, b'{"status": "ready"}', _JSON
            why = "shutting down" if self.shutting_down else "loading models"
            return 503, json.dumps({"status": why}).encode(), _JSON
        if path in self.metrics_paths:
            return (
                200,
                self.service.metrics.render(),
                [(b"content-type", metrics.CONTENT_TYPE)],
            )
        return 404, _error(f"Not found: {method} {path}"), _JSON


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # beyond int64 in TF Serving
        raise invalid(
            f"Failed to convert version: {text} to numeric."
        ) from None


def _metadata_json(response: Any) -> bytes:
    """TF Serving's metadata JSON: `model_spec` and the signature map."""
    options = {
        "always_print_fields_with_no_presence": True,
        "preserving_proto_field_name": True,
    }
    signatures = protos.SignatureDefMap()
    response.metadata[SIGNATURE_DEF].Unpack(signatures)
    body = {
        "model_spec": json_format.MessageToDict(response.model_spec, **options),
        "metadata": {
            SIGNATURE_DEF: json_format.MessageToDict(signatures, **options)
        },
    }
    return json.dumps(body, indent=1).encode()


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
