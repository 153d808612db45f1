"""TF Serving's gRPC API on grpcio: Predict, GetModelMetadata, ModelService.

ModelService is GetModelStatus and HandleReloadConfigRequest (which loads
the new `ModelServerConfig` before it answers; relative base paths are
read from the server's working directory).

The Open Inference Protocol's `inference.GRPCInferenceService` is served on
the same server (`serving.v2_grpc`).

Methods are registered by their TF Serving paths
(`/tensorflow.serving.PredictionService/Predict`, ...) with this package's
messages (`serving.protos`), so `tensorflow-serving-api`'s
`PredictionServiceStub` and `ModelServiceStub` work unchanged. The standard
`grpc.health.v1.Health` service says SERVING once the models are ready.
Errors carry TF Serving's status codes and messages.
"""

import concurrent.futures
import itertools
import logging
import math
import threading
import time
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from serving import protos
from serving import tensors
from serving import v2_grpc
from serving import v2_protos
from serving.access_log import AccessLog
from serving.errors import ServingError
from serving.errors import as_serving_error
from serving.errors import invalid
from serving.model_config import SslConfig
from serving.service import Service

LOG = logging.getLogger("tffm.serve")
_CODES = {code.name: code for code in grpc.StatusCode}
# DataType -> numpy dtype of the numbers `tffm` features take.
_ITEMS: dict[int, np.dtype[Any]] = {
    tensors.DT_FLOAT: np.dtype(np.float32),
    tensors.DT_INT64: np.dtype(np.int64),
    tensors.DT_DOUBLE: np.dtype(np.float64),
    tensors.DT_INT32: np.dtype(np.int32),
}


class GrpcServer:
    """A grpcio server answering TF Serving's calls.

    Args:
        service: the shared `Service`.
        address: str. `host:port` to bind (port 0: any free one).
        max_workers: int. Threads answering calls.
        max_message_bytes: int. Largest request accepted.
        timeout: float. Seconds a batched prediction may wait for its
            result.
        access_log: an `AccessLog`, or None for none.
        reuse_port: bool. Bind with SO_REUSEPORT (worker processes).
        ssl: an `SslConfig` for TLS (TF Serving's `--ssl_config_file`),
            or None for plaintext.
    """

    def __init__(
        self,
        service: Service,
        address: str,
        *,
        max_workers: int,
        max_message_bytes: int,
        timeout: float,
        access_log: AccessLog | None = None,
        reuse_port: bool = False,
        ssl: SslConfig | None = None,
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.access_log = access_log
        self.server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers, thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", int(reuse_port)),
            ],
            maximum_concurrent_rpcs=max_workers * 64,
        )
        unary = grpc.unary_unary_rpc_method_handler
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    protos.PREDICTION_SERVICE,
                    {
                        "Predict": unary(
                            self.predict,
                            protos.PredictRequest.FromString,
                            protos.PredictResponse.SerializeToString,
                        ),
                        "GetModelMetadata": unary(
                            self.get_model_metadata,
                            protos.GetModelMetadataRequest.FromString,
                            protos.GetModelMetadataResponse.SerializeToString,
                        ),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    protos.MODEL_SERVICE,
                    {
                        "GetModelStatus": unary(
                            self.get_model_status,
                            protos.GetModelStatusRequest.FromString,
                            protos.GetModelStatusResponse.SerializeToString,
                        ),
                        "HandleReloadConfigRequest": unary(
                            self.reload_config,
                            protos.ReloadConfigRequest.FromString,
                            protos.ReloadConfigResponse.SerializeToString,
                        ),
                    },
                ),
                v2_grpc.handler(self),
            )
        )
        self.serving = False
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.set_serving(False)
        if ssl is None:
            self.port = self.server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(ssl.server_key.encode(), ssl.server_cert.encode())],
                root_certificates=ssl.custom_ca.encode() or None,
                require_client_auth=ssl.client_verify,
            )
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"Cannot bind the gRPC port at {address}")

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float) -> threading.Event:
        """Stops taking calls at once; in-flight ones get `grace` seconds.

        Returns:
            An event set once every call has finished (or was cancelled
            when `grace` ran out).
        """
        self.set_serving(False)
        done: threading.Event = self.server.stop(grace)
        return done

    def set_serving(self, serving: bool) -> None:
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (
            "",
            protos.PREDICTION_SERVICE,
            protos.MODEL_SERVICE,
            v2_protos.SERVICE,
        ):
            self.health.set(name, status)

    # === Calls ===

    def predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        spec = request.model_spec
        try:
            version, label = _version(spec)
            servable = self.service.manager.resolve(spec.name, version, label)
            raw = _raw_inputs(request, servable.features)
            feeds, size = self.service.feeds(servable, spec.signature_name, raw)
            if servable.batcher is None:
                # In this handler thread: no hand-off to another thread and
                # back; onnxruntime releases the GIL while it runs.
                outputs = servable.predictor.run(feeds)
            else:
                outputs = self.wait(servable.run(feeds, size), context)
            names = list(request.output_filter) or list(outputs)
            response = protos.PredictResponse()
            for name in names:
                if name not in outputs:
                    raise invalid(
                        f"output tensor alias not found in signature: {name} "
                        f"Outputs expected to be in the set "
                        f"{{{','.join(sorted(outputs))}}}."
                    )
                response.outputs[name].CopyFrom(
                    tensors.make_tensor_proto(outputs[name])
                )
            response.model_spec.name = spec.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = (
                spec.signature_name or "serving_default"
            )
        except Exception as error:  # noqa: BLE001 (a status, always)
            failure = as_serving_error(error)
            self.done(spec.name, "predict", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self.done(spec.name, "predict", "OK", start, context)
        return response

    def wait(
        self,
        future: "concurrent.futures.Future[Any]",
        context: grpc.ServicerContext,
    ) -> Any:
        timeout = self.timeout
        remaining = context.time_remaining()  # the client's deadline
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # a task still queued is dropped from its batch
            raise ServingError(
                "DEADLINE_EXCEEDED",
                "Deadline Exceeded: the prediction did not finish within "
                f"{timeout * 1000:g} ms (the call's deadline, at most "
                "--rest_api_timeout_in_ms)",
            ) from None

    def get_model_metadata(
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        start = time.perf_counter()
        spec = request.model_spec
        try:
            version, label = _version(spec)
            response = self.service.metadata(
                spec.name, version, label, list(request.metadata_field)
            )
        except Exception as error:  # noqa: BLE001 (a status, always)
            failure = as_serving_error(error)
            self.done(spec.name, "metadata", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self.done(spec.name, "metadata", "OK", start, context)
        return response

    def get_model_status(
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        start = time.perf_counter()
        spec = request.model_spec
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            version, label = _version(spec)
            response = self.service.status(spec.name, version, label)
        except Exception as error:  # noqa: BLE001 (a status, always)
            failure = as_serving_error(error)
            self.done(spec.name, "status", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self.done(spec.name, "status", "OK", start, context)
        return response

    def reload_config(self, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        try:
            response = self.service.reload(request)
        except Exception as error:  # noqa: BLE001 (a status, always)
            failure = as_serving_error(error)
            self.done("", "reload", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self.done("", "reload", "OK", start, context)
        return response

    def done(
        self,
        model: str,
        api: str,
        code: str,
        start: float,
        context: grpc.ServicerContext,
    ) -> None:
        seconds = time.perf_counter() - start
        label = self.service.model_label(model)
        self.service.metrics.observe(label, api, "grpc", code, seconds)
        if self.access_log is not None:
            self.access_log.grpc(context.peer(), api, model, code, seconds)


def _version(spec: Any) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _raw_inputs(request: Any, features: Any) -> dict[str, Any]:
    """Raw columns of a PredictRequest (TF Serving's input-set errors).

    Numbers become numpy arrays (`tensor_content` read in place); strings
    stay lists of `str`, all of a request's strings decoded in one call.
    """
    names = {f.name for f in features}
    sent = set(request.inputs)
    if sent != names:
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(names)} "
            f"len({{{','.join(sorted(sent))}}}) != "
            f"len({{{','.join(sorted(names))}}}). Sent extra: "
            f"{{{','.join(sorted(sent - names))}}}. Missing but required: "
            f"{{{','.join(sorted(names - sent))}}}."
        )
    raw: dict[str, Any] = {}
    strings: list[tuple[str, tuple[int, ...], list[bytes]]] = []
    for name, tensor in request.inputs.items():
        dims = tensor.tensor_shape.dim
        kind = tensor.dtype
        if kind == tensors.DT_STRING:
            values = tensor.string_val[:]  # a list of bytes, in one call
            if len(dims) == 1:
                shape: tuple[int, ...] = (dims[0].size,)
                if len(values) == shape[0] > 0:
                    strings.append((name, shape, values))
                    continue
            else:
                shape = tuple([d.size for d in dims])
                if len(values) == math.prod(shape) and min(shape, default=1):
                    strings.append((name, shape, values))
                    continue
        elif kind in _ITEMS and len(dims) == 1:  # the usual number
            dtype = _ITEMS[kind]
            content = tensor.tensor_content
            if len(content) == dims[0].size * dtype.itemsize > 0:
                raw[name] = np.frombuffer(content, dtype=dtype)
                continue
        array = tensors.make_ndarray(tensor, name)  # other forms, errors
        if array.dtype == object:  # DT_STRING in the splat form: bytes
            array = _decode_array(name, array)
        raw[name] = array
    if strings:
        texts = _decode(strings)
        offset = 0
        for name, shape, values in strings:
            flat = texts[offset : offset + len(values)]
            offset += len(values)
            if len(shape) == 1:
                raw[name] = flat
            else:
                array = np.empty(len(flat), dtype=object)
                array[:] = flat
                raw[name] = array.reshape(shape)
    return raw


def _decode(
    strings: list[tuple[str, tuple[int, ...], list[bytes]]],
) -> list[str]:
    """All the values as `str`: one join, one decode, one split."""
    flat = list(itertools.chain.from_iterable(v for _, _, v in strings))
    try:
        # NUL cannot end or continue a UTF-8 sequence, so the joined bytes
        # decode exactly when every value does.
        texts = b"\0".join(flat).decode("utf-8").split("\0")
    except UnicodeDecodeError:
        texts = []
    if len(texts) == len(flat):
        return texts
    out: list[str] = []  # a value holds NUL, or bad bytes: one by one
    for name, _, values in strings:
        out += _decode_values(name, values)
    return out


def _decode_values(name: str, values: list[bytes]) -> list[str]:
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError as error:
        raise invalid(
            f"Feature {name!r}: bytes that are not UTF-8 ({error})"
        ) from None


def _decode_array(name: str, array: np.ndarray) -> np.ndarray:
    text = _decode_values(name, array.reshape(-1).tolist())
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out.reshape(array.shape)
