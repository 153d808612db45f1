"""TF Serving's gRPC API on grpcio: Predict, GetModelMetadata, GetModelStatus.

Methods are registered by their TF Serving paths
(`/tensorflow.serving.PredictionService/Predict`, ...) with this package's
messages (`serving.protos`), so `tensorflow-serving-api`'s
`PredictionServiceStub` and `ModelServiceStub` work unchanged. The standard
`grpc.health.v1.Health` service says SERVING once the models are ready.
Errors carry TF Serving's status codes and messages.
"""

import concurrent.futures
import logging
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
from serving.errors import ServingError
from serving.errors import invalid
from serving.service import Service

ACCESS_LOG = logging.getLogger("tffm.serve.access")
LOG = logging.getLogger("tffm.serve")
_CODES = {code.name: code for code in grpc.StatusCode}


class GrpcServer:
    """A grpcio server answering TF Serving's calls.

    Args:
        service: the shared `Service`.
        address: str. `host:port` to bind (port 0: any free one).
        max_workers: int. Threads answering calls.
        max_message_bytes: int. Largest request accepted.
        timeout: float. Seconds a prediction may wait for its result.
    """

    def __init__(
        self,
        service: Service,
        address: str,
        *,
        max_workers: int,
        max_message_bytes: int,
        timeout: float,
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers, thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
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
                        )
                    },
                ),
            )
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.set_serving(False)
        self.port = self.server.add_insecure_port(address)
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
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", protos.PREDICTION_SERVICE, protos.MODEL_SERVICE):
            self.health.set(name, status)

    # === Calls ===

    def predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        spec = request.model_spec
        try:
            version, label = _version(spec)
            servable = self.service.manager.resolve(spec.name, version, label)
            raw = _raw_inputs(request, servable.features)
            future = self.service.submit(servable, spec.signature_name, raw)
            try:
                outputs = future.result(self.timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise ServingError(
                    "DEADLINE_EXCEEDED",
                    "Deadline Exceeded: the prediction did not finish within "
                    f"{self.timeout * 1000:g} ms (--rest_api_timeout_in_ms)",
                ) from None
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
            failure = _serving_error(error)
            self._done(spec.name, "predict", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self._done(spec.name, "predict", "OK", start, context)
        return response

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
            failure = _serving_error(error)
            self._done(spec.name, "metadata", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self._done(spec.name, "metadata", "OK", start, context)
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
            failure = _serving_error(error)
            self._done(spec.name, "status", failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self._done(spec.name, "status", "OK", start, context)
        return response

    def _done(
        self,
        model: str,
        api: str,
        code: str,
        start: float,
        context: grpc.ServicerContext,
    ) -> None:
        seconds = time.perf_counter() - start
        self.service.metrics.observe(
            self.service.model_label(model), api, "grpc", code, seconds
        )
        if ACCESS_LOG.isEnabledFor(logging.INFO):
            import json

            ACCESS_LOG.info(
                json.dumps(
                    {
                        "time": round(time.time(), 6),
                        "transport": "grpc",
                        "remote": context.peer(),
                        "method": api,
                        "model": model,
                        "code": code,
                        "ms": round(seconds * 1e3, 3),
                    }
                )
            )


def _serving_error(error: Exception) -> ServingError:
    """`error` itself, or INTERNAL (logged) for an unexpected one."""
    if isinstance(error, ServingError):
        return error
    LOG.error("gRPC call failed", exc_info=error)
    return ServingError(
        "INTERNAL", f"Internal: {type(error).__name__}: {error}"
    )


def _version(spec: Any) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _raw_inputs(request: Any, features: Any) -> dict[str, Any]:
    """Raw columns of a PredictRequest (TF Serving's input-set errors)."""
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
    raw = {}
    for name in names:
        array = tensors.make_ndarray(request.inputs[name], name)
        if array.dtype == object:  # DT_STRING: bytes -> str, named errors
            try:
                text = [v.decode("utf-8") for v in array.reshape(-1).tolist()]
            except UnicodeDecodeError as error:
                raise invalid(
                    f"Feature {name!r}: bytes that are not UTF-8 ({error})"
                ) from None
            array = np.array(text + [None], dtype=object)[:-1].reshape(
                array.shape
            )
        raw[name] = array
    return raw
