"""ONNX export: raw-input graph for plain onnxruntime, and an ids-in core."""

import json
import os
import tempfile
from typing import Any

import numpy as np

from tffm import constants
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import features_to_json

_ML_OPSET = 2  # ai.onnx.ml LabelEncoder with keys_*/values_* attributes
_LOWEST_OPSET = 11  # CumSum (the FM interaction) and uint64 Mod
_EMPTY_STRING = ""


def export_onnx(
    model: Any,
    path: str,
    *,
    opset: int = constants.DEFAULT_OPSET,
    version: int = 1,
    raw_inputs: bool = True,
    quantize: bool = False,
) -> str:
    """Writes a tffm model as ONNX that runs in plain onnxruntime.

    With `raw_inputs=True` (default) the graph takes the feature values a
    user has: strings / ints for vocabulary features (looked up with
    `ai.onnx.ml.LabelEncoder`), floats for numeric ones, padded 2-D arrays
    for lists. Hashed features take FarmHash `fingerprint64` values as
    int64 (`serving.OnnxPredictor` computes them, TensorFlow-free) and the graph
    applies `1 + fingerprint % hash_bins`. With `raw_inputs=False` it is the
    ids-in core for users who encode themselves (int32 ids, see
    `tffm.features`). The feature spec, hash and model version are stored
    in `metadata_props`. Outputs: `probability` (or `prediction`) and
    `logit`, shape `(batch_size, 1)`; the batch dimension is dynamic.

    Args:
        model: a tffm `FM` (feature-spec form) or `DeepFM`.
        path: str. The `.onnx` file to write.
        opset: int. Default ONNX opset. Defaults to 17.
        version: int. Model version stored in the metadata.
        raw_inputs: bool. Raw-value inputs (default) or encoded ids.
        quantize: bool. Int8 dynamic quantization of the DNN's weights
            (`MatMul`/`Gemm`; embeddings stay float32) for a smaller edge
            model. Its outputs differ from Keras: measure the change with
            `export.parity.accuracy_change`, never assume it.

    Returns:
        `path`.
    """
    import onnx

    features = getattr(model, "features", None)
    if features is None:
        raise ValueError(
            "`model` must be a tffm model with a feature spec. "
            f"Received: {type(model).__name__}"
        )
    highest = _highest_opset()
    if isinstance(opset, bool) or opset not in range(
        _LOWEST_OPSET, highest + 1
    ):
        raise ValueError(
            f"`opset` must be an integer from {_LOWEST_OPSET} (the FM's "
            f"CumSum) to {highest} (the highest tf2onnx converts). "
            f"Received: opset={opset!r}"
        )
    proto = _export_core(model, opset)
    if raw_inputs:
        _add_raw_front(proto, features)
    outputs = [o.name for o in proto.graph.output]
    metadata = {
        constants.ONNX_FEATURES: features_to_json(features),
        constants.ONNX_HASH: constants.HASH_NAME,
        constants.ONNX_VERSION: str(version),
        constants.ONNX_OUTPUTS: json.dumps(outputs),
        constants.ONNX_INPUTS: "raw" if raw_inputs else "ids",
        constants.ONNX_PRECISION: "int8-dnn" if quantize else "float32",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    if quantize:
        _quantize_dnn(path, metadata)
    return path


def _highest_opset() -> int:
    import tf2onnx.constants

    return int(max(tf2onnx.constants.OPSET_TO_IR_VERSION))


def _quantize_dnn(path: str, metadata: dict[str, str]) -> None:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "int8.onnx")
        quantize_dynamic(
            path,
            out,
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
        )
        proto = onnx.load(out)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


def _export_core(model: Any, opset: int) -> Any:
    """The ids-in model through Keras' own ONNX export (tf2onnx)."""
    import onnx

    from tffm.encoder import output_model

    core = output_model(model)
    core(_dummy_ids(model.features))  # Keras exports only called models.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "core.onnx")
        core.export(path, format="onnx", opset_version=opset, verbose=False)
        proto = onnx.load(path)
    # Order outputs as the metadata promises: head first, then logit.
    by_name = {o.name: o for o in proto.graph.output}
    ordered = [by_name[constants.HEAD[model.task]], by_name[constants.LOGIT]]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    return proto


def _add_raw_front(proto: Any, features: tuple[Feature, ...]) -> None:
    """Replaces id inputs with raw-value inputs and lookup nodes."""
    from onnx import TensorProto
    from onnx import helper

    graph = proto.graph
    tensor_types = {
        "string": TensorProto.STRING,
        "int64": TensorProto.INT64,
        "float32": TensorProto.FLOAT,
    }
    inputs = {i.name: i for i in graph.input}
    new_inputs = []
    front = []
    for feature in features:
        name = feature.name
        if isinstance(feature, Numeric):
            new_inputs.append(inputs[name])
            continue
        dims = ["batch_size"] + ([f"{name}_length"] if feature.shape else [])
        ids = f"{name}__ids"
        for node in graph.node:
            node.input[:] = [ids if x == name else x for x in node.input]
        dtype: str = feature.dtype
        if feature.hash_bins is not None:
            front += _hash_nodes(name, ids, feature.hash_bins)
            dtype = "int64"  # fingerprints
        else:
            front += _lookup_nodes(
                name, ids, list(feature.vocabulary or ()), dtype
            )
        new_inputs.append(
            helper.make_tensor_value_info(name, tensor_types[dtype], dims)
        )
    del graph.input[:]
    graph.input.extend(new_inputs)
    nodes = front + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == "ai.onnx.ml" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", _ML_OPSET))


def _lookup_nodes(
    name: str, ids: str, vocabulary: list[Any], dtype: str
) -> list[Any]:
    from onnx import TensorProto
    from onnx import helper

    values = [0] + list(range(2, len(vocabulary) + 2))
    keys: dict[str, Any]
    if dtype == "string":
        keys = {"keys_strings": [_EMPTY_STRING] + list(vocabulary)}
    else:
        keys = {"keys_int64s": [-1] + list(vocabulary)}
    return [
        helper.make_node(
            "LabelEncoder",
            [name],
            [f"{name}__ids64"],
            domain="ai.onnx.ml",
            values_int64s=values,
            default_int64=1,  # out of vocabulary
            name=f"{name}__lookup",
            **keys,
        ),
        helper.make_node(
            "Cast", [f"{name}__ids64"], [ids], to=TensorProto.INT32
        ),
    ]


def _hash_nodes(name: str, ids: str, hash_bins: int) -> list[Any]:
    """`0 if fp == fingerprint64("") else 1 + uint64(fp) % hash_bins`."""
    import farmhash
    from onnx import TensorProto
    from onnx import helper

    empty = int(
        np.array([farmhash.fingerprint64("")], np.uint64).view(np.int64)[0]
    )

    def const(suffix: str, dtype: int, value: int) -> Any:
        return helper.make_node(
            "Constant",
            [],
            [f"{name}__{suffix}"],
            value=helper.make_tensor(f"{name}__{suffix}", dtype, [], [value]),
        )

    p = f"{name}__"
    return [
        const("bins", TensorProto.UINT64, hash_bins),
        const("empty", TensorProto.INT64, empty),
        const("one", TensorProto.INT64, 1),
        const("zero", TensorProto.INT64, 0),
        # Cast int64 -> uint64 keeps the bits: the unsigned fingerprint.
        helper.make_node("Cast", [name], [p + "fp"], to=TensorProto.UINT64),
        helper.make_node("Mod", [p + "fp", p + "bins"], [p + "bucket_u"]),
        helper.make_node(
            "Cast", [p + "bucket_u"], [p + "bucket"], to=TensorProto.INT64
        ),
        helper.make_node("Add", [p + "bucket", p + "one"], [p + "hashed"]),
        helper.make_node("Equal", [name, p + "empty"], [p + "missing"]),
        helper.make_node(
            "Where", [p + "missing", p + "zero", p + "hashed"], [p + "ids64"]
        ),
        helper.make_node("Cast", [p + "ids64"], [ids], to=TensorProto.INT32),
    ]


def _dummy_ids(features: tuple[Feature, ...]) -> dict[str, np.ndarray]:
    batch = {}
    for feature in features:
        if isinstance(feature, Numeric):
            batch[feature.name] = np.zeros((2,), np.float32)
        elif isinstance(feature, MultiCategorical):
            batch[feature.name] = np.zeros((2, 3), np.int32)
        else:
            batch[feature.name] = np.zeros((2,), np.int32)
    return batch
