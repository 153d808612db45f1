"""The Open Inference Protocol's gRPC messages (KServe V2), without protoc.

Package `inference`, service `GRPCInferenceService`: the messages of
KServe's `docs/predict-api/v2/grpc_predict_v2.proto` (kserve/kserve, Apache
2.0; the same messages, field numbers and types as Triton's
`grpc_service.proto` for the calls below), built here from descriptors
written in Python, as `serving.protos` builds TF Serving's. Triton's
additions to these messages (e.g. `InferParameter.double_param`) are left
out; protobuf keeps them as unknown fields.

They live in a private `DescriptorPool`, so a process may also import
`tritonclient`'s or KServe's generated `inference` modules without a
duplicate-symbol conflict. The wire compatibility is tested with
`tritonclient` itself (tests/serving/v2_test.py).
"""

from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

from serving.protos import _F
from serving.protos import _field
from serving.protos import _map
from serving.protos import _map_entry

POOL = descriptor_pool.DescriptorPool()
SERVICE = "inference.GRPCInferenceService"
# The calls served, in the .proto's order: (method, request, response).
METHODS = (
    ("ServerLive", "ServerLiveRequest", "ServerLiveResponse"),
    ("ServerReady", "ServerReadyRequest", "ServerReadyResponse"),
    ("ModelReady", "ModelReadyRequest", "ModelReadyResponse"),
    ("ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse"),
    ("ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse"),
    ("ModelInfer", "ModelInferRequest", "ModelInferResponse"),
)
_P = ".inference"
_PARAMETERS = f"{_P}.InferParameter"
_CONTENTS = f"{_P}.InferTensorContents"


def _message(
    name: str,
    fields: list[Any],
    nested: list[descriptor_pb2.DescriptorProto] | None = None,
) -> descriptor_pb2.DescriptorProto:
    return descriptor_pb2.DescriptorProto(
        name=name, field=fields, nested_type=nested or []
    )


def _parameters(parent: str, number: int) -> tuple[Any, Any]:
    """A `map<string, InferParameter> parameters` field and its entry."""
    entry = _map_entry("ParametersEntry", _F.TYPE_MESSAGE, _PARAMETERS)
    field = _map(parent, "parameters", number, "ParametersEntry")
    return field, entry


def _tensor(parent: str, name: str, contents: bool) -> Any:
    """`{name, datatype, shape, parameters[, contents]}` nested in `parent`."""
    path = f"{parent}.{name}"
    parameters, entry = _parameters(path, 4)
    fields = [
        _field("name", 1, _F.TYPE_STRING),
        _field("datatype", 2, _F.TYPE_STRING),
        _field("shape", 3, _F.TYPE_INT64, repeated=True),
        parameters,
    ]
    if contents:
        fields.append(_field("contents", 5, _F.TYPE_MESSAGE, _CONTENTS))
    return _message(name, fields, [entry])


def _file() -> descriptor_pb2.FileDescriptorProto:
    string, boolean = _F.TYPE_STRING, _F.TYPE_BOOL
    messages = [
        _message("ServerLiveRequest", []),
        _message("ServerLiveResponse", [_field("live", 1, boolean)]),
        _message("ServerReadyRequest", []),
        _message("ServerReadyResponse", [_field("ready", 1, boolean)]),
        _message(
            "ModelReadyRequest",
            [_field("name", 1, string), _field("version", 2, string)],
        ),
        _message("ModelReadyResponse", [_field("ready", 1, boolean)]),
        _message("ServerMetadataRequest", []),
        _message(
            "ServerMetadataResponse",
            [
                _field("name", 1, string),
                _field("version", 2, string),
                _field("extensions", 3, string, repeated=True),
            ],
        ),
        _message(
            "ModelMetadataRequest",
            [_field("name", 1, string), _field("version", 2, string)],
        ),
    ]
    tensor_metadata = _message(
        "TensorMetadata",
        [
            _field("name", 1, string),
            _field("datatype", 2, string),
            _field("shape", 3, _F.TYPE_INT64, repeated=True),
        ],
    )
    metadata = f"{_P}.ModelMetadataResponse.TensorMetadata"
    messages.append(
        _message(
            "ModelMetadataResponse",
            [
                _field("name", 1, string),
                _field("versions", 2, string, repeated=True),
                _field("platform", 3, string),
                _field("inputs", 4, _F.TYPE_MESSAGE, metadata, repeated=True),
                _field("outputs", 5, _F.TYPE_MESSAGE, metadata, repeated=True),
            ],
            [tensor_metadata],
        )
    )
    request = f"{_P}.ModelInferRequest"
    request_parameters, request_entry = _parameters(request, 4)
    requested_parameters, requested_entry = _parameters(
        f"{request}.InferRequestedOutputTensor", 2
    )
    requested = _message(
        "InferRequestedOutputTensor",
        [_field("name", 1, string), requested_parameters],
        [requested_entry],
    )
    messages.append(
        _message(
            "ModelInferRequest",
            [
                _field("model_name", 1, string),
                _field("model_version", 2, string),
                _field("id", 3, string),
                request_parameters,
                _field(
                    "inputs",
                    5,
                    _F.TYPE_MESSAGE,
                    f"{request}.InferInputTensor",
                    repeated=True,
                ),
                _field(
                    "outputs",
                    6,
                    _F.TYPE_MESSAGE,
                    f"{request}.InferRequestedOutputTensor",
                    repeated=True,
                ),
                _field("raw_input_contents", 7, _F.TYPE_BYTES, repeated=True),
            ],
            [
                _tensor(request, "InferInputTensor", contents=True),
                requested,
                request_entry,
            ],
        )
    )
    response = f"{_P}.ModelInferResponse"
    response_parameters, response_entry = _parameters(response, 4)
    messages.append(
        _message(
            "ModelInferResponse",
            [
                _field("model_name", 1, string),
                _field("model_version", 2, string),
                _field("id", 3, string),
                response_parameters,
                _field(
                    "outputs",
                    5,
                    _F.TYPE_MESSAGE,
                    f"{response}.InferOutputTensor",
                    repeated=True,
                ),
                _field("raw_output_contents", 6, _F.TYPE_BYTES, repeated=True),
            ],
            [
                _tensor(response, "InferOutputTensor", contents=True),
                response_entry,
            ],
        )
    )
    parameter = _message(
        "InferParameter",
        [
            _field("bool_param", 1, boolean, oneof=0),
            _field("int64_param", 2, _F.TYPE_INT64, oneof=0),
            _field("string_param", 3, string, oneof=0),
        ],
    )
    parameter.oneof_decl.add(name="parameter_choice")
    messages.append(parameter)
    contents = {
        "bool_contents": (1, boolean),
        "int_contents": (2, _F.TYPE_INT32),
        "int64_contents": (3, _F.TYPE_INT64),
        "uint_contents": (4, _F.TYPE_UINT32),
        "uint64_contents": (5, _F.TYPE_UINT64),
        "fp32_contents": (6, _F.TYPE_FLOAT),
        "fp64_contents": (7, _F.TYPE_DOUBLE),
        "bytes_contents": (8, _F.TYPE_BYTES),
    }
    messages.append(
        _message(
            "InferTensorContents",
            [
                _field(name, number, kind, repeated=True)
                for name, (number, kind) in contents.items()
            ],
        )
    )
    service = descriptor_pb2.ServiceDescriptorProto(
        name="GRPCInferenceService",
        method=[
            descriptor_pb2.MethodDescriptorProto(
                name=name,
                input_type=f"{_P}.{request_name}",
                output_type=f"{_P}.{response_name}",
            )
            for name, request_name, response_name in METHODS
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="tffm_serving/grpc_predict_v2.proto",
        package="inference",
        syntax="proto3",
        message_type=messages,
        service=[service],
    )


def _class(full_name: str) -> Any:
    return message_factory.GetMessageClass(
        POOL.FindMessageTypeByName(full_name)
    )


POOL.AddSerializedFile(_file().SerializeToString())
MESSAGES: dict[str, Any] = {
    name: _class(f"inference.{name}")
    for _, request, response in METHODS
    for name in (request, response)
}
ModelInferRequest = MESSAGES["ModelInferRequest"]
ModelInferResponse = MESSAGES["ModelInferResponse"]
ModelMetadataResponse = MESSAGES["ModelMetadataResponse"]
InferTensorContents = _class("inference.InferTensorContents")
