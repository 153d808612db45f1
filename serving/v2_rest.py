"""The Open Inference Protocol's REST API (KServe V2), beside TF Serving's.

Routes (V2's paths and TF Serving's `/v1/` ones do not overlap):
- `GET /v2`: server metadata (`name`, `version`, `extensions`);
- `GET /v2/health/live`, `/v2/health/ready`: 200, or 400 when not ready
  (loading, shutting down); empty bodies, as the protocol says;
- `GET /v2/models/{name}[/versions/{v}]`: model metadata;
- `GET /v2/models/{name}[/versions/{v}]/ready`: 200 or 400;
- `POST /v2/models/{name}[/versions/{v}]/infer`: inference.
Errors are `{"error": "..."}` (404 for an unknown model or path, 400 for a
bad request or another method on a known path). The request body is
JSON, or JSON followed by binary tensor data (Triton's binary tensor
extension, what `tritonclient.http` sends by default): the header
`Inference-Header-Content-Length` gives the JSON's length, and each binary
input says its size in `parameters.binary_data_size`. Outputs are binary
when the request asks (`parameters.binary_data_output`, or an output's
`parameters.binary_data`), else JSON `data`.
"""

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from serving import rest_json
from serving import v2
from serving.errors import invalid
from serving.errors import not_found
from tffm import __version__

if TYPE_CHECKING:
    from serving.rest import RestApp

_MODEL = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
_HEADER_LENGTH = b"inference-header-content-length"
_JSON = [(b"content-type", b"application/json")]
Response = tuple[str, str, int, bytes, list[tuple[bytes, bytes]]]


def labels(path: str) -> tuple[str, str]:
    """The metrics' `(model, api)` of a request path under `/v2`."""
    match = _MODEL.fullmatch(path)
    if match is None:
        return "", "other"
    api = {"/infer": "v2_infer", "/ready": "v2_ready"}.get(
        match.group(3) or "", "v2_metadata"
    )
    return match.group(1), api


async def handle(
    app: "RestApp", scope: dict[str, Any], receive: Any, method: str, path: str
) -> Response:
    """Answers one request under `/v2`.

    Returns:
        `(model, api, http_status, body, headers)`.
    """
    manager = app.service.manager
    if path in ("/v2", "/v2/"):
        _only(method, "GET", path)
        server = {
            "name": v2.SERVER_NAME,
            "version": __version__,
            "extensions": list(v2.EXTENSIONS),
        }
        return "", "v2_server", 200, orjson.dumps(server), _JSON
    if path in ("/v2/health/live", "/v2/health/ready"):
        _only(method, "GET", path)
        ready = path.endswith("live") or (
            manager.ready and not app.shutting_down
        )
        return "", "v2_health", 200 if ready else 400, b"", _JSON
    match = _MODEL.fullmatch(path)
    if match is None:
        raise not_found(f"Not found: {method} {path}")
    name, version, action = match.groups()
    version = version or ""
    if action == "/infer":
        _only(method, "POST", path)
        body = await app.read_body(scope, receive)
        status, answer, headers = await _infer(
            app, name, version, body, scope["headers"]
        )
        return name, "v2_infer", status, answer, headers
    _only(method, "GET", path)
    if action == "/ready":
        ready = v2.model_ready(manager, name, version)
        return name, "v2_ready", 200 if ready else 400, b"", _JSON
    document = v2.metadata(manager, name, version)
    return name, "v2_metadata", 200, orjson.dumps(document), _JSON


async def _infer(
    app: "RestApp",
    name: str,
    version: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    json_size = None
    for key, value in headers:
        if key == _HEADER_LENGTH:
            try:
                json_size = int(value)
            except ValueError:
                json_size = -1
            if not 0 <= json_size <= len(body):
                raise invalid(
                    f"Inference-Header-Content-Length {value.decode()!r} "
                    f"does not fit a body of {len(body)} bytes"
                )
    header = body if json_size is None else body[:json_size]
    document = rest_json.parse_body(header)
    binary = memoryview(body)[len(header) :]
    servable = v2.resolve(app.service.manager, name, version)
    tensors = _tensors(document, binary)
    raw = v2.raw_inputs(tensors, servable.features)
    outputs = await app.outputs(servable, raw)
    wanted = document.get("outputs") or []
    if not isinstance(wanted, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
    ):
        raise invalid("'outputs' must be a list of objects with a 'name'")
    names = v2.output_names([o["name"] for o in wanted], list(outputs))
    parameters = _parameters(document)
    default_binary = bool(parameters.get("binary_data_output", False))
    per_output = {o["name"]: _parameters(o) for o in wanted}
    listed = []
    chunks = []
    for output in names:
        array = np.ascontiguousarray(outputs[output], dtype="<f4")
        entry: dict[str, Any] = {
            "name": output,
            "datatype": "FP32",
            "shape": list(array.shape),
        }
        if per_output.get(output, {}).get("binary_data", default_binary):
            data = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = array.reshape(-1).tolist()
        listed.append(entry)
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(servable.version),
        "outputs": listed,
    }
    if "id" in document:
        answer["id"] = document["id"]
    text = orjson.dumps(answer)
    if not chunks:
        return 200, text, _JSON
    return (
        200,
        b"".join([text, *chunks]),
        [
            (b"content-type", b"application/octet-stream"),
            (_HEADER_LENGTH, str(len(text)).encode()),
        ],
    )


def _tensors(document: dict[str, Any], binary: memoryview) -> list[v2.Tensor]:
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise invalid("'inputs' must be a non-empty list of tensors")
    tensors = []
    offset = 0
    for i, item in enumerate(inputs):
        if type(item) is not dict:
            raise invalid(f"'inputs' item {i} must be an object")
        name = item.get("name")
        datatype = item.get("datatype")
        shape = item.get("shape")
        if type(name) is not str or type(datatype) is not str:
            raise invalid(
                f"'inputs' item {i} needs a string 'name' and 'datatype'"
            )
        if type(shape) is not list or not all(type(s) is int for s in shape):
            raise invalid(f"Input {name!r}: 'shape' must be a list of integers")
        parameters = item.get("parameters")
        size = _parameters(item).get("binary_data_size") if parameters else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise invalid(
                    f"Input {name!r}: binary_data_size {size!r} does not fit "
                    f"the {len(binary)} bytes of binary data after the JSON"
                )
            raw = bytes(binary[offset : offset + size])
            offset += size
            tensors.append(v2.Tensor(name, datatype, tuple(shape), raw=raw))
        elif "data" in item:
            tensors.append(
                v2.Tensor(name, datatype, tuple(shape), data=item["data"])
            )
        else:
            raise invalid(
                f"Input {name!r} has neither 'data' nor binary_data_size"
            )
    if offset != len(binary):
        raise invalid(
            f"{len(binary) - offset} bytes of binary data after the JSON are "
            "not claimed by any input's binary_data_size"
        )
    return tensors


def _parameters(item: dict[str, Any]) -> dict[str, Any]:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("'parameters' must be an object")
    return parameters


def _only(method: str, allowed: str, path: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise invalid(f"Malformed request: {method} {path}")
