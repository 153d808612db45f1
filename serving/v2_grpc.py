"""The Open Inference Protocol's gRPC `inference.GRPCInferenceService`.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer on the same grpcio server (and port) as TF Serving's services,
with `serving.v2_protos`' messages, so `tritonclient.grpc` and KServe's
client work unchanged. Inputs come in `contents` or in
`raw_input_contents` (then for every input, in order); outputs go back in
`raw_output_contents`, as Triton answers. Errors are gRPC statuses:
INVALID_ARGUMENT for a bad request, NOT_FOUND for an unknown model or
version, UNAVAILABLE for a full batch queue.
"""

import time
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from serving import v2
from serving import v2_protos
from serving.errors import as_serving_error
from serving.errors import invalid
from tffm import __version__

if TYPE_CHECKING:
    from serving.grpc_service import GrpcServer

_CODES = {code.name: code for code in grpc.StatusCode}
# V2 datatype -> the `InferTensorContents` field holding its elements.
_CONTENTS = {
    "BYTES": "bytes_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def handler(server: "GrpcServer") -> grpc.GenericRpcHandler:
    """The service's method handlers, answering from `server.service`."""
    calls = _Calls(server)
    methods = {}
    for method, request, response in v2_protos.METHODS:
        methods[method] = grpc.unary_unary_rpc_method_handler(
            getattr(calls, method),
            v2_protos.MESSAGES[request].FromString,
            v2_protos.MESSAGES[response].SerializeToString,
        )
    return grpc.method_handlers_generic_handler(v2_protos.SERVICE, methods)


class _Calls:
    def __init__(self, server: "GrpcServer") -> None:
        self.server = server
        self.manager = server.service.manager

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return v2_protos.MESSAGES["ServerLiveResponse"](live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return v2_protos.MESSAGES["ServerReadyResponse"](
            ready=self.server.serving
        )

    def ServerMetadata(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        return v2_protos.MESSAGES["ServerMetadataResponse"](
            name=v2.SERVER_NAME,
            version=__version__,
            extensions=list(v2.EXTENSIONS),
        )

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def answer() -> Any:
            ready = v2.model_ready(self.manager, request.name, request.version)
            return v2_protos.MESSAGES["ModelReadyResponse"](ready=ready)

        return self._call(request.name, "v2_ready", answer, context)

    def ModelMetadata(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        def answer() -> Any:
            document = v2.metadata(self.manager, request.name, request.version)
            response = v2_protos.ModelMetadataResponse(
                name=document["name"],
                versions=document["versions"],
                platform=document["platform"],
            )
            for key in ("inputs", "outputs"):
                for tensor in document[key]:
                    getattr(response, key).add(**tensor)
            return response

        return self._call(request.name, "v2_metadata", answer, context)

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(
            request.model_name,
            "v2_infer",
            lambda: self._infer(request, context),
            context,
        )

    def _infer(self, request: Any, context: grpc.ServicerContext) -> Any:
        servable = v2.resolve(
            self.manager, request.model_name, request.model_version
        )
        raw = v2.raw_inputs(_tensors(request), servable.features)
        feeds, size = self.server.service.feeds(servable, "", raw)
        if servable.batcher is None:  # in this handler thread, as Predict
            outputs = servable.predictor.run(feeds)
        else:
            outputs = self.server.wait(servable.run(feeds, size), context)
        names = v2.output_names(
            [o.name for o in request.outputs], list(outputs)
        )
        response = v2_protos.ModelInferResponse(
            model_name=request.model_name,
            model_version=str(servable.version),
            id=request.id,
        )
        for name in names:
            array = np.ascontiguousarray(outputs[name], dtype="<f4")
            response.outputs.add(
                name=name, datatype="FP32", shape=list(array.shape)
            )
            response.raw_output_contents.append(array.tobytes())
        return response

    def _call(
        self,
        model: str,
        api: str,
        answer: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        start = time.perf_counter()
        try:
            response = answer()
        except Exception as error:  # noqa: BLE001 (a status, always)
            failure = as_serving_error(error)
            self.server.done(model, api, failure.code, start, context)
            context.abort(_CODES[failure.code], failure.message)
        self.server.done(model, api, "OK", start, context)
        return response


def _tensors(request: Any) -> list[v2.Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(
            f"raw_input_contents holds {len(raw)} entries for "
            f"{len(request.inputs)} inputs; it must hold one per input"
        )
    tensors = []
    for i, tensor in enumerate(request.inputs):
        shape = tuple(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise invalid(
                    f"Input {tensor.name!r}: contents must be empty when "
                    "raw_input_contents is used"
                )
            tensors.append(
                v2.Tensor(tensor.name, tensor.datatype, shape, raw=raw[i])
            )
            continue
        field = _CONTENTS.get(tensor.datatype)
        data = getattr(tensor.contents, field) if field else []
        tensors.append(v2.Tensor(tensor.name, tensor.datatype, shape, data))
    return tensors
