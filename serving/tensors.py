"""`TensorProto` <-> numpy, like TensorFlow's `make_ndarray` and friends.

Works on this package's messages (`serving.protos`) and on the official
`tensorflow_serving.apis` ones alike (same field names). Strings are bytes
on the wire (`string_val`); numbers travel in `tensor_content` (raw little-
endian bytes, what TF Serving writes) or in the typed `*_val` fields (what
hand-written clients often send), including TensorFlow's "splat" form: one
value for a whole shape.
"""

from typing import Any

import numpy as np

from serving import protos
from serving.errors import invalid

_DT = {v.name: v.number for v in protos.DataType.values}
# DataType -> (numpy dtype, `*_val` field holding its values).
_NUMPY = {
    _DT["DT_FLOAT"]: (np.float32, "float_val"),
    _DT["DT_DOUBLE"]: (np.float64, "double_val"),
    _DT["DT_INT32"]: (np.int32, "int_val"),
    _DT["DT_INT16"]: (np.int16, "int_val"),
    _DT["DT_INT8"]: (np.int8, "int_val"),
    _DT["DT_UINT8"]: (np.uint8, "int_val"),
    _DT["DT_UINT16"]: (np.uint16, "int_val"),
    _DT["DT_INT64"]: (np.int64, "int64_val"),
    _DT["DT_UINT32"]: (np.uint32, "uint32_val"),
    _DT["DT_UINT64"]: (np.uint64, "uint64_val"),
    _DT["DT_BOOL"]: (np.bool_, "bool_val"),
    _DT["DT_HALF"]: (np.float16, "half_val"),
}
_FROM_NUMPY = {np.dtype(dtype): number for number, (dtype, _) in _NUMPY.items()}
DT_STRING = _DT["DT_STRING"]
DT_FLOAT = _DT["DT_FLOAT"]
DT_INT64 = _DT["DT_INT64"]
DT_DOUBLE = _DT["DT_DOUBLE"]
DT_INT32 = _DT["DT_INT32"]
# Raw feature dtypes (tffm.features) -> DataType names.
FEATURE_DTYPES = {
    "string": "DT_STRING",
    "int64": "DT_INT64",
    "float32": "DT_FLOAT",
}


def dtype_name(number: int) -> str:
    """`DataType` name of an enum value (`"DT_FLOAT"`), or its number."""
    value = protos.DataType.values_by_number.get(number)
    return value.name if value is not None else str(number)


def make_ndarray(tensor: Any, name: str = "") -> np.ndarray:
    """The numpy value of a `TensorProto`; strings as an object array of bytes.

    Args:
        tensor: a `TensorProto` (this package's or TensorFlow's).
        name: str. Input name, for error messages.

    Raises:
        ServingError: INVALID_ARGUMENT for an unsupported dtype or values
            that do not fill the shape.
    """
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise invalid(f"Input {name!r}: negative dimension in shape {shape}")
    size = int(np.prod(shape, dtype=np.int64))
    if tensor.dtype == DT_STRING:
        values = list(tensor.string_val)
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif tensor.dtype in _NUMPY:
        dtype, field = _NUMPY[tensor.dtype]
        if tensor.tensor_content:
            content = tensor.tensor_content
            if len(content) != size * np.dtype(dtype).itemsize:
                raise invalid(
                    f"Input {name!r}: tensor_content holds {len(content)} "
                    f"bytes; shape {list(shape)} of {dtype_name(tensor.dtype)} "
                    f"needs {size * np.dtype(dtype).itemsize}"
                )
            return np.frombuffer(content, dtype=dtype).reshape(shape)
        raw = getattr(tensor, field)
        if tensor.dtype == _DT["DT_HALF"]:
            array = np.array(raw, np.uint16).view(np.float16)
        else:
            array = np.array(raw, dtype=dtype)
    else:
        raise invalid(
            f"Input {name!r}: unsupported dtype {dtype_name(tensor.dtype)}"
        )
    if len(array) == size:
        return array.reshape(shape)
    if len(array) == 1 or (len(array) == 0 and tensor.dtype != DT_STRING):
        # TensorFlow's splat form: one value (or none: zeros) fills the shape.
        fill = array[0] if len(array) else array.dtype.type(0)
        return np.full(shape, fill, dtype=array.dtype)
    raise invalid(
        f"Input {name!r}: {len(array)} values do not fill shape {list(shape)}"
    )


def make_tensor_proto(values: Any, cls: Any = None) -> Any:
    """A `TensorProto` holding `values` (numbers, strings, nested lists).

    Args:
        values: array-like. `str` values are sent as UTF-8 bytes.
        cls: the `TensorProto` class to build; defaults to this package's.

    Returns:
        The message: numbers in `tensor_content`, strings in `string_val`.
    """
    tensor = (cls or protos.TensorProto)()
    array = np.asarray(values)
    for dim in array.shape:
        tensor.tensor_shape.dim.add().size = dim
    if array.dtype.kind in "OUS":
        tensor.dtype = DT_STRING
        tensor.string_val.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v)
            for v in array.reshape(-1).tolist()
        )
        return tensor
    if array.dtype not in _FROM_NUMPY:
        raise ValueError(
            f"`values` of dtype {array.dtype} have no TensorFlow dtype here."
        )
    tensor.dtype = _FROM_NUMPY[array.dtype]
    tensor.tensor_content = (
        np.ascontiguousarray(array)
        .astype(array.dtype.newbyteorder("<"), copy=False)
        .tobytes()
    )
    return tensor
