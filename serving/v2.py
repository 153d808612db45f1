"""The Open Inference Protocol (KServe V2) tensors <-> raw feature columns.

What V2 REST (`serving.v2_rest`) and V2 gRPC (`serving.v2_grpc`) share: a
model's metadata, and the checks that turn V2 input tensors into the raw
columns `OnnxPredictor.feed` takes. One input tensor per feature, named as
the feature: string features are `BYTES` of shape `[batch]` (a list
feature: `[batch, length]`, padded with `""`), integer-vocabulary features
`INT64` (or `INT32`), numeric features `FP32` (or `FP64`; NaN = missing).
A scalar feature may also come as `[batch, 1]`. Outputs are `FP32`
`[batch, 1]`. `BYTES` elements in binary form (gRPC `raw_input_contents`,
REST's binary tensor extension) are each a 4-byte little-endian length and
the bytes, as Triton writes them. Errors are INVALID_ARGUMENT naming the
tensor; an unknown model or version is NOT_FOUND.
"""

import dataclasses
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.errors import invalid
from serving.manager import ModelManager
from serving.manager import Servable
from tffm.features import Feature

SERVER_NAME = "tffm"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ("binary_tensor_data",)
# Raw feature dtype -> the V2 datatype its metadata names.
DATATYPES = {"string": "BYTES", "int64": "INT64", "float32": "FP32"}
# Raw feature dtype -> the V2 datatypes accepted for it.
_ACCEPTED = {
    "string": ("BYTES",),
    "int64": ("INT64", "INT32"),
    "float32": ("FP32", "FP64"),
}
NUMPY: dict[str, np.dtype[Any]] = {
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


@dataclasses.dataclass
class Tensor:
    """One V2 input tensor as received.

    Args:
        name: str. The tensor (feature) name.
        datatype: str. A V2 datatype (`BYTES`, `FP32`, ...).
        shape: tuple of int.
        data: the elements, flat or nested (JSON, protobuf `contents`),
            or None when `raw` holds them.
        raw: bytes. The elements in binary form, or None.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    raw: bytes | None = None


def parse_version(text: str | None) -> int | None:
    """A V2 version string as a number; empty or None: the latest."""
    if not text:
        return None
    if not text.isdigit():
        raise invalid(
            f"Model version must be a non-negative integer. Received: {text!r}"
        )
    return int(text)


def resolve(manager: ModelManager, name: str, version: str) -> Servable:
    """The servable a V2 request names (NOT_FOUND when there is none)."""
    return manager.resolve(name, parse_version(version))


def versions(manager: ModelManager, name: str) -> list[str]:
    """The loaded versions of `name`, oldest first, as V2 lists them."""
    return [
        str(v)
        for v in sorted(
            s.version for s in manager.servables() if s.name == name
        )
    ]


def model_ready(manager: ModelManager, name: str, version: str) -> bool:
    """Whether the model (version) serves; NOT_FOUND for an unknown model."""
    number = parse_version(version)
    if name not in manager.models:
        manager.resolve(name, number)  # raises NOT_FOUND
    try:
        manager.resolve(name, number)
    except Exception:  # noqa: BLE001 (not loaded: not ready)
        return False
    return True


def metadata(manager: ModelManager, name: str, version: str) -> dict[str, Any]:
    """The V2 model metadata: name, versions, platform, inputs, outputs."""
    servable = resolve(manager, name, version)
    return {
        "name": name,
        "versions": versions(manager, name),
        "platform": PLATFORM,
        "inputs": [
            {
                "name": feature.name,
                "datatype": DATATYPES[feature.dtype],
                "shape": [-1] * (1 + len(feature.shape)),
            }
            for feature in servable.features
        ],
        "outputs": [
            {"name": output, "datatype": "FP32", "shape": [-1, 1]}
            for output in servable.predictor.output_names
        ],
    }


def raw_inputs(
    tensors: Sequence[Tensor], features: Sequence[Feature]
) -> dict[str, Any]:
    """The raw feature columns of V2 input tensors.

    Returns:
        `{feature_name: column}`: a list of `str` (scalar string features),
        an object array `(batch_size, length)` of `str` (list string
        features), or a numpy array of numbers.

    Raises:
        ServingError: INVALID_ARGUMENT naming the tensor.
    """
    by_name = {f.name: f for f in features}
    sent = [t.name for t in tensors]
    if len(set(sent)) != len(sent):
        twice = sorted({n for n in sent if sent.count(n) > 1})
        raise invalid(f"Input tensors appear more than once: {twice}")
    missing = sorted(set(by_name) - set(sent))
    unexpected = sorted(set(sent) - set(by_name))
    if missing or unexpected:
        raise invalid(
            f"The model expects inputs {sorted(by_name)}; missing: "
            f"{missing}, unexpected: {unexpected}"
        )
    return {t.name: _column(t, by_name[t.name]) for t in tensors}


def output_names(
    requested: Sequence[str], available: Sequence[str]
) -> list[str]:
    """The outputs to return: those requested (all if none), checked."""
    if not requested:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise invalid(
            f"Unknown output tensor(s) {unknown}; the model has "
            f"{list(available)}"
        )
    return list(requested)


def decode_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """`count` length-prefixed elements of a binary `BYTES` tensor."""
    values = []
    offset = 0
    view = memoryview(raw)
    for _ in range(count):
        if offset + 4 > len(raw):
            break
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            break
        values.append(bytes(view[offset : offset + size]))
        offset += size
    if len(values) != count or offset != len(raw):
        raise invalid(
            f"Input {name!r}: the BYTES contents do not hold {count} "
            "length-prefixed elements (4-byte little-endian length, then "
            "the bytes, per element)"
        )
    return values


def _column(tensor: Tensor, feature: Feature) -> Any:
    name = tensor.name
    accepted = _ACCEPTED[feature.dtype]
    if tensor.datatype not in accepted:
        raise invalid(
            f"Input {name!r} must have datatype "
            f"{' or '.join(accepted)}. Received: {tensor.datatype!r}"
        )
    shape = tensor.shape
    rank = 1 + len(feature.shape)
    if not shape or shape[0] == 0 or min(shape) < 0:
        raise invalid(
            f"Input {name!r}: shape must be [batch_size"
            f"{', length' if rank == 2 else ''}] with batch_size > 0. "
            f"Received: {list(shape)}"
        )
    rows: tuple[int, ...] = shape
    if rank == 1 and len(shape) == 2 and shape[1] == 1:
        rows = (shape[0],)
    elif len(shape) != rank or (rank == 2 and shape[1] == 0):
        expected = "[batch_size] or [batch_size, 1]"
        if rank == 2:
            expected = "[batch_size, length]"
        raise invalid(
            f"Input {name!r}: shape must be {expected}. Received: {list(shape)}"
        )
    count = math.prod(shape)
    data = tensor.data
    if (
        rank == 1
        and tensor.raw is None
        and hasattr(data, "__len__")
        and not isinstance(data, str | bytes | dict)
        and len(data) == count
        and not isinstance(data[0], list)
    ):
        # A flat column (JSON list, protobuf repeated field): the feed
        # checks its values as any raw column's, naming the feature.
        if type(data) is list:
            return data
        values = list(data)
        if tensor.datatype == "BYTES" and values:
            return _decode_all(values, name)
        return values
    if tensor.datatype == "BYTES":
        values = _strings(tensor, count)
        if rank == 1:
            return values
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(rows)
    dtype = NUMPY[tensor.datatype]
    if tensor.raw is not None:
        if len(tensor.raw) != count * dtype.itemsize:
            raise invalid(
                f"Input {name!r}: {len(tensor.raw)} bytes of contents; shape "
                f"{list(shape)} of {tensor.datatype} needs "
                f"{count * dtype.itemsize}"
            )
        numbers = np.frombuffer(tensor.raw, dtype=dtype)
    else:
        try:
            numbers = np.asarray(tensor.data, dtype=dtype).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise invalid(
                f"Input {name!r}: data must be numbers of {tensor.datatype} "
                "(flat or nested lists)"
            ) from None
        if numbers.size != count:
            raise invalid(
                f"Input {name!r}: {numbers.size} elements; shape "
                f"{list(shape)} needs {count}"
            )
    raw_dtype = np.int64 if feature.dtype == "int64" else np.float32
    return numbers.astype(raw_dtype, copy=False).reshape(rows)


def _strings(tensor: Tensor, count: int) -> list[str]:
    name = tensor.name
    if tensor.raw is not None:
        values: list[Any] = decode_bytes(tensor.raw, count, name)
    else:
        values = _flatten(tensor.data, name)
        if len(values) != count:
            raise invalid(
                f"Input {name!r}: {len(values)} elements; shape "
                f"{list(tensor.shape)} needs {count}"
            )
    out = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bytes):
            try:
                out.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise invalid(
                    f"Input {name!r}: bytes that are not UTF-8"
                ) from None
        else:
            raise invalid(
                f"Input {name!r}: BYTES elements must be strings. "
                f"Received: {value!r}"
            )
    return out


def _flatten(data: Any, name: str) -> list[Any]:
    if isinstance(data, str | bytes | dict) or not hasattr(data, "__len__"):
        raise invalid(f"Input {name!r}: data must be a list")
    if all(not isinstance(v, list) for v in data):
        return list(data)
    flat: list[Any] = []
    for value in data:
        flat.extend(
            _flatten(value, name) if isinstance(value, list) else [value]
        )
    return flat


def _decode_all(values: list[bytes], name: str) -> list[str]:
    """UTF-8 `str`s of `bytes` values: one join, one decode, one split."""
    try:
        # NUL cannot end or continue a UTF-8 sequence, so the joined bytes
        # decode exactly when every value does.
        texts = b"\0".join(values).decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise invalid(f"Input {name!r}: bytes that are not UTF-8") from None
    if len(texts) != len(values):  # a value holds NUL: one by one
        texts = [v.decode("utf-8") for v in values]
    return texts
