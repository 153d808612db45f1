"""One client for TF Serving and `tffm serve`: raw features in, outputs out.

```python
from serving.client import Client

client = Client("localhost:8501", "ctr")                  # REST
client = Client("localhost:8500", "ctr", transport="grpc")  # gRPC
client.predict({"city": ["tokyo"], "price": [3.0]})
# {'probability': array([[0.62]], dtype=float32), 'logit': ...}
```

REST uses the standard library (`http.client`, one keep-alive connection
per thread); gRPC uses `grpcio` with this package's copies of TF Serving's
messages, so neither transport needs TensorFlow. Errors are raised as
`ServingError` with TF Serving's status code and message.
"""

import base64
import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving import protos
from serving import tensors
from serving.errors import HTTP_STATUS
from serving.errors import ServingError
from tffm import constants

_HTTP_CODES = {status: code for code, status in reversed(HTTP_STATUS.items())}


class Client:
    """Calls a model on TF Serving or `tffm serve`, over REST or gRPC.

    Args:
        target: str. `host:port` (or an `http://host:port` URL for REST).
        model_name: str. The model's name in `models.config`.
        transport: str. `"rest"` (default) or `"grpc"`.
        version: int. A specific version; None for the latest.
        version_label: str. A version label from `models.config`.
        signature_name: str. Defaults to `serving_default`.
        timeout: float. Seconds per call.
    """

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        transport: str = "rest",
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = constants.SIGNATURE_NAME,
        timeout: float = 10.0,
    ) -> None:
        if transport not in ("rest", "grpc"):
            raise ValueError(
                "`transport` must be 'rest' or 'grpc'. "
                f"Received: transport={transport!r}"
            )
        if version is not None and version_label is not None:
            raise ValueError("Give `version` or `version_label`, not both.")
        self.model_name = model_name
        self.transport = transport
        self.version = version
        self.version_label = version_label
        self.signature_name = signature_name
        self.timeout = timeout
        address = urllib.parse.urlsplit(
            target if "//" in target else f"//{target}"
        )
        self.host = address.hostname or "localhost"
        self.port = address.port or (8501 if transport == "rest" else 8500)
        self._local = threading.local()
        self._channel: Any = None
        if transport == "grpc":
            import grpc  # optional: the [serving] extra

            self._channel = grpc.insecure_channel(f"{self.host}:{self.port}")
            self._predict = self._channel.unary_unary(
                protos.PREDICT,
                request_serializer=protos.PredictRequest.SerializeToString,
                response_deserializer=protos.PredictResponse.FromString,
            )
            self._metadata = self._channel.unary_unary(
                protos.GET_MODEL_METADATA,
                request_serializer=(
                    protos.GetModelMetadataRequest.SerializeToString
                ),
                response_deserializer=protos.GetModelMetadataResponse.FromString,
            )
            self._status = self._channel.unary_unary(
                protos.GET_MODEL_STATUS,
                request_serializer=protos.GetModelStatusRequest.SerializeToString,
                response_deserializer=protos.GetModelStatusResponse.FromString,
            )

    def predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns `{output_name: numpy array}` for raw feature values.

        Args:
            raw: `{feature_name: values}`, one value (or padded list) per
                example; strings, ints, floats (NaN: missing).
        """
        if self.transport == "grpc":
            return self._grpc_predict(raw)
        body = predict_request(raw, signature_name=self.signature_name)
        data = json.dumps(body, allow_nan=True).encode()
        outputs = self._rest("POST", self._path(":predict"), data)["outputs"]
        if not isinstance(outputs, dict):  # a single unnamed output
            outputs = {"output": outputs}
        return {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}

    def status(self) -> list[dict[str, Any]]:
        """`[{version, state, status}]`: the model's versions."""
        if self.transport == "grpc":
            request = protos.GetModelStatusRequest()
            self._spec(request.model_spec)
            request.model_spec.ClearField("signature_name")
            response = self._call(self._status, request)
            from google.protobuf import json_format

            return list(
                json_format.MessageToDict(
                    response,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )["model_version_status"]
            )
        result = self._rest("GET", self._path(""), None)
        return list(result["model_version_status"])

    def metadata(self) -> dict[str, Any]:
        """The `serving_default` signature: `{inputs, outputs, method_name}`."""
        if self.transport == "grpc":
            from google.protobuf import json_format

            request = protos.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            self._spec(request.model_spec)
            response = self._call(self._metadata, request)
            signatures = protos.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            maps = json_format.MessageToDict(
                signatures,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        else:
            maps = self._rest("GET", self._path("/metadata"), None)["metadata"][
                "signature_def"
            ]
        return dict(maps["signature_def"][constants.SIGNATURE_NAME])

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()

    # === gRPC ===

    def _grpc_predict(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        request = protos.PredictRequest()
        self._spec(request.model_spec)
        for name, values in raw.items():
            request.inputs[name].CopyFrom(tensors.make_tensor_proto(values))
        response = self._call(self._predict, request)
        return {
            name: tensors.make_ndarray(tensor, name)
            for name, tensor in response.outputs.items()
        }

    def _spec(self, spec: Any) -> None:
        spec.name = self.model_name
        spec.signature_name = self.signature_name
        if self.version is not None:
            spec.version.value = self.version
        if self.version_label is not None:
            spec.version_label = self.version_label

    def _call(self, method: Any, request: Any) -> Any:
        import grpc  # optional: the [serving] extra

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(error.code().name, error.details()) from None

    # === REST ===

    def _path(self, suffix: str) -> str:
        path = f"/v1/models/{urllib.parse.quote(self.model_name)}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        elif self.version_label is not None:
            path += f"/labels/{urllib.parse.quote(self.version_label)}"
        return path + suffix

    def _rest(self, method: str, path: str, body: bytes | None) -> Any:
        for attempt in (0, 1):  # one retry on a keep-alive connection reset
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
                self._local.connection = connection
            try:
                connection.request(
                    method,
                    path,
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        result = json.loads(data) if data else {}
        if response.status != 200:
            message = result.get("error", data.decode(errors="replace"))
            raise ServingError(
                _HTTP_CODES.get(response.status, "UNKNOWN"), message
            )
        return result


def predict_request(
    raw: Mapping[str, Any], *, signature_name: str = constants.SIGNATURE_NAME
) -> dict[str, Any]:
    """TF Serving REST body (columnar `inputs` form) for raw feature values.

    NaN numerics (missing) are sent as JSON `NaN`, which TF Serving parses;
    bytes that are not UTF-8 are sent as `{"b64": ...}`.
    """
    inputs = {}
    for name, values in raw.items():
        array = np.asarray(values)
        if array.dtype.kind == "S" or (
            array.dtype.kind == "O"
            and any(isinstance(v, bytes) for v in array.flat)
        ):
            inputs[name] = _nested(_text_or_b64, array.tolist())
            continue
        inputs[name] = array.tolist()
    return {"signature_name": signature_name, "inputs": inputs}


def _nested(function: Any, value: Any) -> Any:
    if isinstance(value, list):
        return [_nested(function, v) for v in value]
    return function(value)


def _text_or_b64(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return value
