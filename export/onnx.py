"""ONNX export: raw-input graph for plain onnxruntime, and an ids-in core."""

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.onnx_data import EXTERNAL_DATA_BYTES
from export.onnx_data import convert_core
from export.onnx_data import weight_bytes
from export.onnx_front import add_raw_front
from export.precision import float32_model
from export.tables import StoredTable
from export.tables import check_table_precision
from export.tables import dequantize_after_gather
from export.tables import quantized_twin
from tffm import constants
from tffm.features import Feature
from tffm.features import features_to_json

_LOWEST_OPSET = 11  # CumSum (the FM interaction) and uint64 Mod


def export_onnx(
    model: Any,
    path: str,
    *,
    opset: int = constants.DEFAULT_OPSET,
    version: int = 1,
    raw_inputs: bool = True,
    quantize: bool = False,
    table_precision: str = "float32",
    external_data: bool | None = None,
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
        table_precision: str. How the embedding tables are stored:
            `"float32"` (default), `"float16"`, or `"int8"` (row-wise
            symmetric, one float32 scale per row); the linear weights in
            float16 under both (`export.tables`). The graph reads them
            with `Gather`, `Cast` and `Mul` (standard ONNX). Its outputs
            are those of `export.tables.quantized_twin(model, ...)`, the
            model with the dequantized tables, to float32 rounding; what
            that costs against `model` is measured by
            `export.precision_cost`, never assumed.
        external_data: bool. Keep the weights in `<path>.data` beside the
            `.onnx` file (ONNX external data; onnxruntime loads it from
            there, so the two files travel together). Defaults to `None`:
            only when the weights exceed 1 GiB (a protobuf, hence a plain
            `.onnx` file, cannot exceed 2 GB).

    Returns:
        `path`.
    """
    model = float32_model(model)
    import onnx  # deferred: onnx

    check_table_precision(table_precision)
    features = getattr(model, "features", None)
    if features is None:
        raise ValueError(
            "`model` must be a tffm model with a feature spec. "
            f"Received: {type(model).__name__}"
        )
    check_opset(opset)
    if external_data is None:
        external_data = weight_bytes(model) > EXTERNAL_DATA_BYTES
    if external_data and quantize:
        raise ValueError(
            "`quantize=True` is for small edge models; this export keeps "
            "its weights in external data (`external_data`). Received: "
            f"quantize=True, external_data=True ({weight_bytes(model):,} "
            "bytes of weights)"
        )
    twin, stored = quantized_twin(model, table_precision)
    if stored and not external_data:
        proto, tables = _inline_core(twin, opset, stored)
    else:
        proto, tables = _export_core(
            twin,
            opset,
            data_path=path if external_data else None,
            stored=stored,
        )
    if stored:
        dequantize_after_gather(proto, tables)
    del twin
    if raw_inputs:
        add_raw_front(proto, features)
    outputs = [o.name for o in proto.graph.output]
    metadata = {
        constants.ONNX_FEATURES: features_to_json(features),
        constants.ONNX_HASH: constants.HASH_NAME,
        constants.ONNX_VERSION: str(version),
        constants.ONNX_OUTPUTS: json.dumps(outputs),
        constants.ONNX_INPUTS: "raw" if raw_inputs else "ids",
        constants.ONNX_PRECISION: _precision_name(table_precision, quantize),
    }
    _set_metadata(proto, metadata)
    if external_data:  # the data file is written: save the graph beside it
        onnx.save(proto, path)
        onnx.checker.check_model(path)  # a path: the data is checked too
        return path
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    if quantize:
        _quantize_dnn(path, metadata)
    return path


def check_opset(opset: object) -> None:
    """Fails unless tf2onnx converts the FM at `opset` (before any work)."""
    highest = _highest_opset()
    if isinstance(opset, bool) or opset not in range(
        _LOWEST_OPSET, highest + 1
    ):
        raise ValueError(
            f"`opset` must be an integer from {_LOWEST_OPSET} (the FM's "
            f"CumSum) to {highest} (the highest tf2onnx converts). "
            f"Received: opset={opset!r}"
        )


def _highest_opset() -> int:
    import tf2onnx.constants  # deferred: tf2onnx

    return int(max(tf2onnx.constants.OPSET_TO_IR_VERSION))


def _precision_name(table_precision: str, quantize: bool) -> str:
    """`float32`, `int8-tables`, `float16-tables`, `+int8-dnn` if `quantize`."""
    parts = (
        [] if table_precision == "float32" else [f"{table_precision}-tables"]
    )
    if quantize:
        parts.append("int8-dnn")
    return "+".join(parts) or "float32"


def _quantize_dnn(path: str, metadata: dict[str, str]) -> None:
    import onnx  # deferred: onnx, onnxruntime
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
    _set_metadata(proto, metadata)  # quantize_dynamic drops it
    onnx.save(proto, path)


def _set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replaces `proto`'s `metadata_props` with `metadata`."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)


def _export_core(
    model: Any,
    opset: int,
    *,
    data_path: str | None,
    stored: Mapping[str, StoredTable],
) -> tuple[Any, dict[str, StoredTable]]:
    """The ids-in model as an ONNX `ModelProto` (tf2onnx), and its tables.

    Through Keras' own `model.export(format="onnx")`; with `data_path`,
    through `export.onnx_data.convert_core`, which writes the large weights
    to the data file beside `data_path` (Keras' export holds the weights
    in a protobuf, which cannot exceed 2 GB), the `stored` tables as
    stored. Returns `(proto, {table initializer: StoredTable})`, the
    tables empty without `data_path`.
    """
    import onnx  # deferred: onnx

    from tffm.encoder import output_model  # deferred: Keras

    core = output_model(model)
    core(_dummy_ids(model.features))  # Keras exports only called models.
    tables: dict[str, StoredTable] = {}
    if data_path is not None:
        proto, tables = convert_core(
            core, _input_specs(model.features), opset, data_path, stored=stored
        )
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "core.onnx")
            core.export(path, format="onnx", opset_version=opset, verbose=False)
            proto = onnx.load(path)
    # Order outputs as the metadata promises: head first, then logit.
    by_name = {o.name: o for o in proto.graph.output}
    ordered = [by_name[constants.HEAD[model.task]], by_name[constants.LOGIT]]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    return proto, tables


def _inline_core(
    model: Any, opset: int, stored: Mapping[str, StoredTable]
) -> tuple[Any, dict[str, StoredTable]]:
    """`_export_core` with stored tables, all weights inline in the proto.

    Converted through `convert_core` (weights as function inputs, written
    to a data file one variable at a time), then read back inline. Keras'
    `model.export` would freeze every weight into constants first, holding
    several copies of the table in memory, and write the float32 tables
    only for them to be replaced.
    """
    import onnx  # deferred: onnx

    with tempfile.TemporaryDirectory() as tmp:
        proto, tables = _export_core(
            model,
            opset,
            data_path=os.path.join(tmp, "core.onnx"),
            stored=stored,
        )
        onnx.load_external_data_for_model(proto, tmp)  # now inline
    return proto, tables


def _input_specs(features: tuple[Feature, ...]) -> dict[str, Any]:
    """`{name: tf.TensorSpec}` of the ids-in inputs (`feature_inputs`)."""
    import tensorflow as tf  # deferred: TensorFlow

    return {
        f.name: tf.TensorSpec((None, *f.shape), tf.as_dtype(f.encoded_dtype))
        for f in features
    }


def _dummy_ids(features: tuple[Feature, ...]) -> dict[str, np.ndarray]:
    """Zeros (id 0: missing) of each input's dtype; lists of length 3."""
    return {
        f.name: np.zeros((2, *(3 for _ in f.shape)), f.encoded_dtype)
        for f in features
    }
