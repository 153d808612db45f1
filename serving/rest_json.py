"""TF Serving's REST predict JSON <-> raw feature columns.

Follows `tensorflow_serving/util/json_tensor.cc`: a body is an object with
an optional string `signature_name` and exactly one of `instances` (rows:
a non-empty list of objects, one key per input) or `inputs` (columns: an
object, one key per input); string values may be `{"b64": "..."}`; NaN and
Infinity are accepted. Errors are TF Serving's wording where it has one and
name the feature where it does not.
"""

import base64
import binascii
import functools
import itertools
import json
import operator
from typing import Any

import numpy as np
import orjson

from serving.errors import invalid
from tffm import constants
from tffm.features import Feature


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (TF Serving's parse errors)."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN, Infinity, huge ints, or an error
        document = _parse_slowly(body)
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {_short(document)} Is not object")
    signature = document.get("signature_name", constants.SIGNATURE_NAME)
    if not isinstance(signature, str):
        raise invalid(
            f"JSON Value: {_short(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return document


def _parse_slowly(body: bytes) -> Any:
    """`json.loads`: what orjson refuses and TF Serving accepts, and errors."""
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise invalid(f"JSON Parse error: Invalid encoding ({error})") from None
    except json.JSONDecodeError as error:
        raise invalid(
            f"JSON Parse error: {error.msg} at offset: {error.pos}"
        ) from None


def check_signature(document: dict[str, Any]) -> None:
    """Only `serving_default` (or none) exists, as in a tffm SavedModel."""
    name = document.get("signature_name") or constants.SIGNATURE_NAME
    if name != constants.SIGNATURE_NAME:
        raise invalid(
            f'Serving signature name: "{name}" not found in signature def'
        )


def columns_from_request(
    document: dict[str, Any], features: tuple[Feature, ...]
) -> tuple[dict[str, Any], bool]:
    """Raw columns of a predict body, and whether it used rows.

    Returns:
        `({feature_name: list of values}, row_format)`.
    """
    names, strings = _names(features)
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows and has_columns:
        raise invalid(
            f"JSON Value: {_short(document)} Not formatted correctly expecting "
            "only one of 'inputs' or 'instances' keys to exist "
        )
    if has_rows:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise invalid(
                f"JSON Value: {_short(document)} Expecting 'instances' to be "
                "an list/array"
            )
        if not instances:
            raise invalid(
                f"JSON Value: {_short(document)} No values in 'instances' array"
            )
        if not isinstance(instances[0], dict) and len(names) > 1:
            raise invalid(
                "instances is a plain list, but expecting list of objects as "
                "multiple input tensors required as per tensorinfo_map"
            )
        wanted = set(names)
        for i, row in enumerate(instances):
            if type(row) is not dict:
                raise invalid(
                    f"Expecting object but got list at item {i} of input list"
                )
            if row.keys() != wanted:
                raise invalid(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"JSON object: {_short(row)} keys must be equal to: "
                    f"{','.join(sorted(names))}" + _difference(set(row), wanted)
                )
        # Rows -> columns in C: one itemgetter tuple per row, one zip.
        if len(names) == 1:
            columns = {names[0]: [row[names[0]] for row in instances]}
        else:
            picked = map(operator.itemgetter(*names), instances)
            rows_of = zip(*picked, strict=True)  # every tuple has len(names)
            columns = dict(zip(names, map(list, rows_of), strict=True))
    elif has_columns:
        inputs = document["inputs"]
        if not isinstance(inputs, dict) or _is_b64(inputs):
            raise invalid(
                "inputs is a plain value/list, but expecting an object as "
                "multiple input tensors required as per tensorinfo_map"
            )
        if inputs.keys() != set(names):
            _check_names(inputs, names)
        columns = inputs
        if set(map(type, inputs.values())) != {list}:
            for name, value in columns.items():
                if not isinstance(value, list):
                    raise invalid(
                        f"Feature {name!r} must be a list (one value per "
                        f"example). Received: {_short(value)}"
                    )
    else:
        raise invalid("Missing 'inputs' or 'instances' key")
    # Only `{"b64": ...}` values need work: one C-level pass says if any.
    flat = itertools.chain.from_iterable(columns[n] for n in strings)
    if set(map(type, flat)) - {str}:
        columns = dict(columns)
        for name in strings:
            columns[name] = _decode_b64(name, columns[name])
    return columns, has_rows


@functools.lru_cache(maxsize=64)
def _names(features: tuple[Feature, ...]) -> tuple[list[str], list[str]]:
    """Feature names, and those of the string features (cached per spec)."""
    names = [f.name for f in features]
    return names, [f.name for f in features if f.dtype == "string"]


def _check_names(inputs: dict[str, Any], names: list[str]) -> None:
    for name in names:
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
    extra = sorted(set(inputs) - set(names))
    raise invalid(
        f"input size does not match signature: {len(inputs)}!="
        f"{len(names)} len({{{','.join(sorted(inputs))}}}) != "
        f"len({{{','.join(sorted(names))}}}). Sent extra: "
        f"{{{','.join(extra)}}}. Missing but required: {{}}."
    )


def response_json(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """TF Serving's `predictions` (rows) or `outputs` (columns) body.

    orjson writes it unless an output is not finite: orjson would write
    `null` where TF Serving writes `NaN` / `Infinity`.
    """
    names = list(outputs)
    lists = [outputs[n].tolist() for n in names]
    if row_format:
        if len(names) == 1:
            body: dict[str, Any] = {"predictions": lists[0]}
        else:
            body = {
                "predictions": [
                    dict(zip(names, values, strict=True))
                    for values in zip(*lists, strict=True)
                ]
            }
    elif len(names) == 1:
        body = {"outputs": lists[0]}
    else:
        body = {"outputs": dict(zip(names, lists, strict=True))}
    if all(np.isfinite(outputs[n]).all() for n in names):
        return orjson.dumps(body)
    return json.dumps(body, separators=(",", ":")).encode()


def _decode_b64(name: str, values: list[Any]) -> list[Any]:
    """`{"b64": ...}` entries (at any nesting) as bytes; others unchanged."""
    types = set(map(type, values))  # C-level loops: no per-value bytecode
    if types == {str}:
        return values
    if types == {list} and set(
        map(type, itertools.chain.from_iterable(values))
    ) == {str}:
        return values
    return [_decode_value(name, v) for v in values]


def _decode_value(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(name, v) for v in value]
    if isinstance(value, dict):
        if not _is_b64(value):
            raise invalid(
                f"JSON Value: {_short(value)} not formatted correctly for "
                "base64 data"
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid(
                f"Feature {name!r}: Unable to base64 decode"
            ) from None
    return value


def _is_b64(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get("b64"), str)
    )


def _difference(got: set[str], wanted: set[str]) -> str:
    extra, missing = sorted(got - wanted), sorted(wanted - got)
    parts = []
    if extra:
        parts.append(f"extra: {','.join(extra)}")
    if missing:
        parts.append(f"missing: {','.join(missing)}")
    return " (" + "; ".join(parts) + ")"


def _short(value: Any, limit: int = 200) -> str:
    """A JSON rendering of `value`, cut for error messages."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
