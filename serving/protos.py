"""TF Serving's gRPC messages, defined here without TensorFlow.

The `tensorflow-serving-api` package depends on TensorFlow, which an edge
install does not have, so the messages the server and client use are built
here from descriptors written in Python: the same packages, message names,
field numbers, types and enum values as TensorFlow's and TF Serving's
`.proto` files (`tensor.proto`, `tensor_shape.proto`, `types.proto`,
`meta_graph.proto`'s `TensorInfo` / `SignatureDef`, and `model.proto`,
`predict.proto`, `get_model_metadata.proto`, `get_model_status.proto`,
`model_management.proto`, `status.proto`, `error_codes.proto` of
`tensorflow_serving/apis`, and `model_server_config.proto`,
`file_system_storage_path_source.proto`'s `ServableVersionPolicy` of
`tensorflow_serving/config`). Fields
this server never reads (e.g. `PredictRequest.request_options`,
`TensorProto.resource_handle_val`) are left out; protobuf keeps them as
unknown fields, so messages still round-trip byte for byte.

They live in a private `DescriptorPool`, so a process may also import the
official `tensorflow_serving.apis` modules (as the tests do) without a
duplicate-symbol conflict in the default pool. The wire compatibility is
tested: bytes of the official messages parse into these and back.
"""

from typing import Any

from google.protobuf import any_pb2
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import wrappers_pb2

_F: Any = descriptor_pb2.FieldDescriptorProto
POOL = descriptor_pool.DescriptorPool()

# DataType values 1..33 (types.proto); `<name>_REF` is value + 100.
_DATA_TYPES = (
    "FLOAT DOUBLE INT32 UINT8 INT16 INT8 STRING COMPLEX64 INT64 BOOL QINT8 "
    "QUINT8 QINT32 BFLOAT16 QINT16 QUINT16 UINT16 COMPLEX128 HALF RESOURCE "
    "VARIANT UINT32 UINT64 FLOAT8_E5M2 FLOAT8_E4M3FN FLOAT8_E4M3FNUZ "
    "FLOAT8_E4M3B11FNUZ FLOAT8_E5M2FNUZ INT4 UINT4 INT2 UINT2 FLOAT4_E2M1FN"
).split()
# tensorflow.error.Code (error_codes.proto).
ERROR_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "UNAUTHENTICATED": 16,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "DO_NOT_USE_RESERVED_FOR_FUTURE_EXPANSION_USE_DEFAULT_IN_SWITCH_INSTEAD_": (
        20
    ),
}
MODEL_STATES = {
    "UNKNOWN": 0,
    "START": 10,
    "LOADING": 20,
    "AVAILABLE": 30,
    "UNLOADING": 40,
    "END": 50,
}


def _field(
    name: str,
    number: int,
    kind: int,
    type_name: str = "",
    *,
    repeated: bool = False,
    oneof: int | None = None,
    json_name: str | None = None,
) -> Any:
    field = _F(
        name=name,
        number=number,
        type=kind,  # type: ignore[arg-type]
        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    if json_name is not None:
        field.json_name = json_name
    return field


def _map_entry(
    name: str, value_kind: int, value_type: str = ""
) -> descriptor_pb2.DescriptorProto:
    entry = descriptor_pb2.DescriptorProto(
        name=name,
        field=[
            _field("key", 1, _F.TYPE_STRING),
            _field("value", 2, value_kind, value_type),
        ],
    )
    entry.options.map_entry = True
    return entry


def _map(parent: str, name: str, number: int, entry: str) -> Any:
    return _field(
        name, number, _F.TYPE_MESSAGE, f"{parent}.{entry}", repeated=True
    )


def _enum(
    name: str, values: dict[str, int]
) -> descriptor_pb2.EnumDescriptorProto:
    return descriptor_pb2.EnumDescriptorProto(
        name=name,
        value=[
            descriptor_pb2.EnumValueDescriptorProto(name=k, number=v)
            for k, v in values.items()
        ],
    )


def _tensorflow_file() -> descriptor_pb2.FileDescriptorProto:
    """Package `tensorflow`: DataType, shapes, tensors, signatures."""
    data_types = {"DT_INVALID": 0}
    data_types.update({f"DT_{n}": i for i, n in enumerate(_DATA_TYPES, 1)})
    data_types.update(
        {f"DT_{n}_REF": i + 100 for i, n in enumerate(_DATA_TYPES, 1)}
    )
    dim = descriptor_pb2.DescriptorProto(
        name="Dim",
        field=[
            _field("size", 1, _F.TYPE_INT64),
            _field("name", 2, _F.TYPE_STRING),
        ],
    )
    shape = descriptor_pb2.DescriptorProto(
        name="TensorShapeProto",
        field=[
            _field(
                "dim",
                2,
                _F.TYPE_MESSAGE,
                ".tensorflow.TensorShapeProto.Dim",
                repeated=True,
            ),
            _field("unknown_rank", 3, _F.TYPE_BOOL),
        ],
        nested_type=[dim],
    )
    packed = {
        "half_val": (13, _F.TYPE_INT32),
        "float_val": (5, _F.TYPE_FLOAT),
        "double_val": (6, _F.TYPE_DOUBLE),
        "int_val": (7, _F.TYPE_INT32),
        "scomplex_val": (9, _F.TYPE_FLOAT),
        "int64_val": (10, _F.TYPE_INT64),
        "bool_val": (11, _F.TYPE_BOOL),
        "dcomplex_val": (12, _F.TYPE_DOUBLE),
        "uint32_val": (16, _F.TYPE_UINT32),
        "uint64_val": (17, _F.TYPE_UINT64),
    }
    tensor = descriptor_pb2.DescriptorProto(
        name="TensorProto",
        field=[
            _field("dtype", 1, _F.TYPE_ENUM, ".tensorflow.DataType"),
            _field(
                "tensor_shape",
                2,
                _F.TYPE_MESSAGE,
                ".tensorflow.TensorShapeProto",
            ),
            _field("version_number", 3, _F.TYPE_INT32),
            _field("tensor_content", 4, _F.TYPE_BYTES),
            _field("string_val", 8, _F.TYPE_BYTES, repeated=True),
            _field("float8_val", 18, _F.TYPE_BYTES),
        ]
        + [
            _field(name, number, kind, repeated=True)
            for name, (number, kind) in packed.items()
        ],
    )
    tensor_info = descriptor_pb2.DescriptorProto(
        name="TensorInfo",
        field=[
            _field("name", 1, _F.TYPE_STRING, oneof=0),
            _field("dtype", 2, _F.TYPE_ENUM, ".tensorflow.DataType"),
            _field(
                "tensor_shape",
                3,
                _F.TYPE_MESSAGE,
                ".tensorflow.TensorShapeProto",
            ),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="encoding")],
    )
    signature = descriptor_pb2.DescriptorProto(
        name="SignatureDef",
        field=[
            _map(".tensorflow.SignatureDef", "inputs", 1, "InputsEntry"),
            _map(".tensorflow.SignatureDef", "outputs", 2, "OutputsEntry"),
            _field("method_name", 3, _F.TYPE_STRING),
            _map(".tensorflow.SignatureDef", "defaults", 4, "DefaultsEntry"),
        ],
        nested_type=[
            _map_entry(
                "InputsEntry", _F.TYPE_MESSAGE, ".tensorflow.TensorInfo"
            ),
            _map_entry(
                "OutputsEntry", _F.TYPE_MESSAGE, ".tensorflow.TensorInfo"
            ),
            _map_entry(
                "DefaultsEntry", _F.TYPE_MESSAGE, ".tensorflow.TensorProto"
            ),
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="tffm_serving/tensorflow.proto",
        package="tensorflow",
        syntax="proto3",
        message_type=[shape, tensor, tensor_info, signature],
        enum_type=[_enum("DataType", data_types)],
    )


def _error_file() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(
        name="tffm_serving/error_codes.proto",
        package="tensorflow.error",
        syntax="proto3",
        enum_type=[_enum("Code", ERROR_CODES)],
    )


def _serving_file() -> descriptor_pb2.FileDescriptorProto:
    """Package `tensorflow.serving`: requests, responses and services."""
    p = ".tensorflow.serving"
    spec = f"{p}.ModelSpec"
    model_spec = descriptor_pb2.DescriptorProto(
        name="ModelSpec",
        field=[
            _field("name", 1, _F.TYPE_STRING),
            _field(
                "version",
                2,
                _F.TYPE_MESSAGE,
                ".google.protobuf.Int64Value",
                oneof=0,
            ),
            _field("version_label", 4, _F.TYPE_STRING, oneof=0),
            _field("signature_name", 3, _F.TYPE_STRING),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="version_choice")],
    )
    tensor_entry = (_F.TYPE_MESSAGE, ".tensorflow.TensorProto")
    predict_request = descriptor_pb2.DescriptorProto(
        name="PredictRequest",
        field=[
            _field("model_spec", 1, _F.TYPE_MESSAGE, spec),
            _map(f"{p}.PredictRequest", "inputs", 2, "InputsEntry"),
            _field("output_filter", 3, _F.TYPE_STRING, repeated=True),
        ],
        nested_type=[_map_entry("InputsEntry", *tensor_entry)],
    )
    predict_response = descriptor_pb2.DescriptorProto(
        name="PredictResponse",
        field=[
            _field("model_spec", 2, _F.TYPE_MESSAGE, spec),
            _map(f"{p}.PredictResponse", "outputs", 1, "OutputsEntry"),
        ],
        nested_type=[_map_entry("OutputsEntry", *tensor_entry)],
    )
    signature_map = descriptor_pb2.DescriptorProto(
        name="SignatureDefMap",
        field=[
            _map(
                f"{p}.SignatureDefMap", "signature_def", 1, "SignatureDefEntry"
            )
        ],
        nested_type=[
            _map_entry(
                "SignatureDefEntry", _F.TYPE_MESSAGE, ".tensorflow.SignatureDef"
            )
        ],
    )
    metadata_request = descriptor_pb2.DescriptorProto(
        name="GetModelMetadataRequest",
        field=[
            _field("model_spec", 1, _F.TYPE_MESSAGE, spec),
            _field("metadata_field", 2, _F.TYPE_STRING, repeated=True),
        ],
    )
    metadata_response = descriptor_pb2.DescriptorProto(
        name="GetModelMetadataResponse",
        field=[
            _field("model_spec", 1, _F.TYPE_MESSAGE, spec),
            _map(
                f"{p}.GetModelMetadataResponse", "metadata", 2, "MetadataEntry"
            ),
        ],
        nested_type=[
            _map_entry("MetadataEntry", _F.TYPE_MESSAGE, ".google.protobuf.Any")
        ],
    )
    status = descriptor_pb2.DescriptorProto(
        name="StatusProto",
        field=[
            _field(
                "error_code",
                1,
                _F.TYPE_ENUM,
                ".tensorflow.error.Code",
                json_name="error_code",
            ),
            _field(
                "error_message", 2, _F.TYPE_STRING, json_name="error_message"
            ),
        ],
    )
    version_status = descriptor_pb2.DescriptorProto(
        name="ModelVersionStatus",
        field=[
            _field("version", 1, _F.TYPE_INT64),
            _field("state", 2, _F.TYPE_ENUM, f"{p}.ModelVersionStatus.State"),
            _field("status", 3, _F.TYPE_MESSAGE, f"{p}.StatusProto"),
        ],
        enum_type=[_enum("State", MODEL_STATES)],
    )
    status_request = descriptor_pb2.DescriptorProto(
        name="GetModelStatusRequest",
        field=[_field("model_spec", 1, _F.TYPE_MESSAGE, spec)],
    )
    status_response = descriptor_pb2.DescriptorProto(
        name="GetModelStatusResponse",
        field=[
            _field(
                "model_version_status",
                1,
                _F.TYPE_MESSAGE,
                f"{p}.ModelVersionStatus",
                repeated=True,
                json_name="model_version_status",
            )
        ],
    )

    policy_path = f"{p}.FileSystemStoragePathSourceConfig.ServableVersionPolicy"
    policy = descriptor_pb2.DescriptorProto(
        name="ServableVersionPolicy",
        field=[
            _field(
                "latest", 100, _F.TYPE_MESSAGE, f"{policy_path}.Latest", oneof=0
            ),
            _field("all", 101, _F.TYPE_MESSAGE, f"{policy_path}.All", oneof=0),
            _field(
                "specific",
                102,
                _F.TYPE_MESSAGE,
                f"{policy_path}.Specific",
                oneof=0,
            ),
        ],
        nested_type=[
            descriptor_pb2.DescriptorProto(
                name="Latest", field=[_field("num_versions", 1, _F.TYPE_UINT32)]
            ),
            descriptor_pb2.DescriptorProto(name="All"),
            descriptor_pb2.DescriptorProto(
                name="Specific",
                field=[_field("versions", 1, _F.TYPE_INT64, repeated=True)],
            ),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="policy_choice")],
    )
    storage = descriptor_pb2.DescriptorProto(
        name="FileSystemStoragePathSourceConfig", nested_type=[policy]
    )
    model_config = descriptor_pb2.DescriptorProto(
        name="ModelConfig",
        field=[
            _field("name", 1, _F.TYPE_STRING),
            _field("base_path", 2, _F.TYPE_STRING),
            _field("model_platform", 4, _F.TYPE_STRING),
            _field("model_version_policy", 7, _F.TYPE_MESSAGE, policy_path),
            _map(f"{p}.ModelConfig", "version_labels", 8, "VersionLabelsEntry"),
        ],
        nested_type=[_map_entry("VersionLabelsEntry", _F.TYPE_INT64)],
    )
    config_list = descriptor_pb2.DescriptorProto(
        name="ModelConfigList",
        field=[
            _field(
                "config", 1, _F.TYPE_MESSAGE, f"{p}.ModelConfig", repeated=True
            )
        ],
    )
    server_config = descriptor_pb2.DescriptorProto(
        name="ModelServerConfig",
        field=[
            _field(
                "model_config_list",
                1,
                _F.TYPE_MESSAGE,
                f"{p}.ModelConfigList",
                oneof=0,
            ),
            _field(
                "custom_model_config",
                2,
                _F.TYPE_MESSAGE,
                ".google.protobuf.Any",
                oneof=0,
            ),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="config")],
    )
    reload_request = descriptor_pb2.DescriptorProto(
        name="ReloadConfigRequest",
        field=[
            _field("config", 1, _F.TYPE_MESSAGE, f"{p}.ModelServerConfig"),
            _field("metric_names", 2, _F.TYPE_STRING, repeated=True),
        ],
    )
    reload_response = descriptor_pb2.DescriptorProto(
        name="ReloadConfigResponse",
        field=[_field("status", 1, _F.TYPE_MESSAGE, f"{p}.StatusProto")],
    )

    def method(
        name: str, request: str, response: str
    ) -> descriptor_pb2.MethodDescriptorProto:
        return descriptor_pb2.MethodDescriptorProto(
            name=name,
            input_type=f"{p}.{request}",
            output_type=f"{p}.{response}",
        )

    services = [
        descriptor_pb2.ServiceDescriptorProto(
            name="PredictionService",
            method=[
                method("Predict", "PredictRequest", "PredictResponse"),
                method(
                    "GetModelMetadata",
                    "GetModelMetadataRequest",
                    "GetModelMetadataResponse",
                ),
            ],
        ),
        descriptor_pb2.ServiceDescriptorProto(
            name="ModelService",
            method=[
                method(
                    "GetModelStatus",
                    "GetModelStatusRequest",
                    "GetModelStatusResponse",
                ),
                method(
                    "HandleReloadConfigRequest",
                    "ReloadConfigRequest",
                    "ReloadConfigResponse",
                ),
            ],
        ),
    ]
    return descriptor_pb2.FileDescriptorProto(
        name="tffm_serving/tensorflow_serving.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[
            "google/protobuf/any.proto",
            "google/protobuf/wrappers.proto",
            "tffm_serving/tensorflow.proto",
            "tffm_serving/error_codes.proto",
        ],
        message_type=[
            model_spec,
            predict_request,
            predict_response,
            signature_map,
            metadata_request,
            metadata_response,
            status,
            version_status,
            status_request,
            status_response,
            storage,
            model_config,
            config_list,
            server_config,
            reload_request,
            reload_response,
        ],
        service=services,
    )


def _build() -> None:
    for module in (any_pb2, wrappers_pb2):
        POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    for file in (_tensorflow_file(), _error_file(), _serving_file()):
        POOL.AddSerializedFile(file.SerializeToString())


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(
        POOL.FindMessageTypeByName(full_name)
    )


_build()
DataType = POOL.FindEnumTypeByName("tensorflow.DataType")
TensorShapeProto = _message("tensorflow.TensorShapeProto")
TensorProto = _message("tensorflow.TensorProto")
TensorInfo = _message("tensorflow.TensorInfo")
SignatureDef = _message("tensorflow.SignatureDef")
ModelSpec = _message("tensorflow.serving.ModelSpec")
PredictRequest = _message("tensorflow.serving.PredictRequest")
PredictResponse = _message("tensorflow.serving.PredictResponse")
SignatureDefMap = _message("tensorflow.serving.SignatureDefMap")
GetModelMetadataRequest = _message("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = _message(
    "tensorflow.serving.GetModelMetadataResponse"
)
StatusProto = _message("tensorflow.serving.StatusProto")
ModelVersionStatus = _message("tensorflow.serving.ModelVersionStatus")
GetModelStatusRequest = _message("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = _message("tensorflow.serving.GetModelStatusResponse")
AnyMessage = _message("google.protobuf.Any")
ModelServerConfig = _message("tensorflow.serving.ModelServerConfig")
ReloadConfigRequest = _message("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = _message("tensorflow.serving.ReloadConfigResponse")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
# `/package.Service/Method` paths of the gRPC calls served.
PREDICT = f"/{PREDICTION_SERVICE}/Predict"
GET_MODEL_METADATA = f"/{PREDICTION_SERVICE}/GetModelMetadata"
GET_MODEL_STATUS = f"/{MODEL_SERVICE}/GetModelStatus"
RELOAD_CONFIG = f"/{MODEL_SERVICE}/HandleReloadConfigRequest"
