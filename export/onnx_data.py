"""ONNX external data: models whose weights do not fit a 2 GB protobuf.

A protobuf message cannot exceed 2 GB, so an ONNX file cannot hold a large
embedding table (39 fields x 1M ids x 17 float32 = 2.65 GB). ONNX's
external data format keeps the graph in the `.onnx` file and the tensor
bytes in a data file beside it, which onnxruntime reads when it loads the
model. tffm names the data file after the model (`model.onnx` ->
`model.onnx.data`) and aligns each tensor to 4096 bytes.

The conversion never puts the large weights in a protobuf either: Keras'
`model.export(format="onnx")` freezes every variable into a TensorFlow
constant first, which fails above 2 GB ("Cannot create a tensor proto
whose content is larger than 2GB"), and tf2onnx's `large_model` mode gets
past that only by holding five or six copies of the table (over 15 GB of
memory for 2.5 GB of weights, measured). `convert_core` instead traces the
model with its large weights as function inputs (`keras.StatelessScope`
maps each variable to its input), converts that small graph with tf2onnx,
then turns those inputs into external initializers whose bytes it writes
one variable at a time: one copy of one table in memory at most.
"""

import os
import shutil
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.tables import SCALE_SUFFIX
from export.tables import StoredTable
from tffm import constants

# Weights above this many bytes go to a data file by default (the protobuf
# limit is 2 GiB for the whole model; the margin covers the graph).
EXTERNAL_DATA_BYTES = 1 << 30
# With external data, variables of more elements than this become external
# initializers (tf2onnx's own threshold for external tensors).
_EXTERNAL_ELEMENTS = 1024
_ALIGN = 4096
_WEIGHT_PREFIX = "tffm_weight_"


def weight_bytes(model: Any) -> int:
    """Bytes of a Keras model's weights, from shapes (no values read)."""
    return sum(
        int(np.prod(w.shape, dtype=np.int64)) * np.dtype(str(w.dtype)).itemsize
        for w in model.weights
    )


def data_file(path: str) -> str:
    """The data file name that tffm writes beside the ONNX file `path`."""
    return os.path.basename(path) + constants.ONNX_DATA_SUFFIX


def convert_core(
    core: Any,
    inputs: Mapping[str, Any],
    opset: int,
    path: str,
    *,
    stored: Mapping[str, StoredTable] | None = None,
) -> tuple[Any, dict[str, StoredTable]]:
    """Converts a called Keras model (TF backend) with external weights.

    Args:
        core: the model; its outputs a dict.
        inputs: `{input_name: tf.TensorSpec}`, the model's dict input.
        opset: int. ONNX opset.
        path: str. The `.onnx` file the proto will be saved as; the data
            file (`data_file(path)`) is written beside it now.
        stored: `{variable path: StoredTable}`: tables written as stored
            (int8 / float16 values, and int8's scales as a
            `<name>__scale` initializer) instead of the variable's value.

    Returns:
        `(proto, tables)`: the `ModelProto`, whose large weights are
        initializers stored in the data file and the others inline, and
        `{initializer name: StoredTable}` of the `stored` tables (for
        `export.tables.dequantize_after_gather`; an int8 table's scales
        are the initializer `<name>__scale`).
    """
    import keras  # deferred: Keras, TensorFlow, tf2onnx
    import tensorflow as tf
    import tf2onnx

    stored = stored or {}
    names = list(inputs)
    large = [
        v
        for v in core.weights
        if int(np.prod(v.shape)) > _EXTERNAL_ELEMENTS or v.path in stored
    ]
    weight_names = [f"{_WEIGHT_PREFIX}{i}" for i in range(len(large))]
    signature = [
        tf.TensorSpec(spec.shape, spec.dtype, name=name)
        for name, spec in inputs.items()
    ] + [
        tf.TensorSpec(v.shape, str(v.dtype), name=name)
        for v, name in zip(large, weight_names, strict=True)
    ]

    def serve(*args: Any) -> Any:
        ids = dict(zip(names, args[: len(names)], strict=True))
        mapping = list(zip(large, args[len(names) :], strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            outputs = core(ids, training=False)
        return {k: tf.identity(v, name=k) for k, v in outputs.items()}

    function = tf.function(serve, input_signature=signature, autograph=False)
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=signature, opset=opset
    )
    missing = set(stored) - {v.path for v in large}
    if missing:
        raise ValueError(f"Tables {sorted(missing)} are not in the model.")
    tables = _weights_to_data(
        proto, dict(zip(weight_names, large, strict=True)), path, stored
    )
    return proto, tables


def _weights_to_data(
    proto: Any,
    weights: Mapping[str, Any],
    path: str,
    stored: Mapping[str, StoredTable],
) -> dict[str, StoredTable]:
    """Graph inputs named in `weights` -> initializers in the data file.

    Returns `{initializer: StoredTable}` of the tables in `stored` (by
    variable path) that the graph reads.
    """
    name = data_file(path)
    kept = [i for i in proto.graph.input if i.name not in weights]
    present = {i.name for i in proto.graph.input} & set(weights)
    tables: dict[str, StoredTable] = {}
    with open(os.path.join(os.path.dirname(path) or ".", name), "wb") as f:
        for input_name, variable in weights.items():
            if input_name not in present:  # unused by the graph
                continue
            table = stored.get(variable.path)
            if table is None:
                value = np.ascontiguousarray(variable.numpy())
                _append_external(proto, f, name, input_name, value)
                del value
                continue
            _append_external(proto, f, name, input_name, table.values)
            tables[input_name] = table
            if table.scales is not None:
                scale_name = input_name + SCALE_SUFFIX
                scales = np.ascontiguousarray(table.scales.reshape(-1, 1))
                _append_external(proto, f, name, scale_name, scales)
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    return tables


def _append_external(
    proto: Any, f: Any, location: str, name: str, value: np.ndarray
) -> None:
    """Appends `value` to data file `f` (aligned) as initializer `name`."""
    from onnx import TensorProto  # deferred: onnx
    from onnx import helper

    value = np.ascontiguousarray(value)
    tensor = TensorProto(
        name=name,
        data_type=helper.np_dtype_to_tensor_dtype(value.dtype),
        dims=value.shape,
        data_location=TensorProto.EXTERNAL,
    )
    offset = f.tell()
    f.write(value.data)
    f.write(b"\0" * (-f.tell() % _ALIGN))
    for key, text in (
        ("location", location),
        ("offset", str(offset)),
        ("length", str(value.nbytes)),
    ):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, text
    proto.graph.initializer.append(tensor)


def copy_onnx(source: str, target: str) -> None:
    """Copies an ONNX file, and its data file renamed after `target`."""
    import onnx  # deferred: onnx

    proto = onnx.load(source, load_external_data=False)
    tensors = list(external_tensors(proto))
    if not tensors:
        shutil.copyfile(source, target)
        return
    locations = {_location(t) for t in tensors}
    if len(locations) != 1:
        raise ValueError(
            f"{source}: external data in {len(locations)} files "
            f"{sorted(locations)}; tffm writes one data file per model."
        )
    name = data_file(target)
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = name
    data = os.path.join(os.path.dirname(source) or ".", locations.pop())
    copy = os.path.join(os.path.dirname(target) or ".", name)
    try:
        os.link(data, copy)  # same bytes, no second copy of gigabytes
    except OSError:
        shutil.copyfile(data, copy)
    onnx.save(proto, target)


def external_tensors(proto: Any) -> Iterator[Any]:
    """Every tensor of the model stored as external data (subgraphs too)."""
    from onnx import TensorProto  # deferred: onnx

    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            yield tensor


def _all_tensors(graph: Any) -> Iterator[Any]:
    from onnx import AttributeProto  # deferred: onnx

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_tensors(sub)


def _location(tensor: Any) -> str:
    for entry in tensor.external_data:
        if entry.key == "location":
            return str(entry.value)
    raise ValueError(f"External tensor {tensor.name!r} has no location.")
