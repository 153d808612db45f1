"""A small client for TF Serving's REST predict API (standard library only)."""

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np


def predict_request(
    raw: Mapping[str, Any], *, signature_name: str = "serving_default"
) -> dict[str, Any]:
    """TF Serving REST body (columnar `inputs` form) for raw feature values.

    NaN numerics (missing) are sent as JSON `NaN`, which TF Serving parses.
    """
    inputs = {}
    for name, values in raw.items():
        array = np.asarray(values)
        if array.dtype.kind == "S":
            array = np.char.decode(array, "utf-8")
        inputs[name] = array.tolist()
    return {"signature_name": signature_name, "inputs": inputs}


def predict_rest(
    url: str,
    model_name: str,
    raw: Mapping[str, Any],
    *,
    version: int | None = None,
    timeout: float = 10.0,
) -> dict[str, np.ndarray]:
    """Calls `POST {url}/v1/models/{model_name}[/versions/N]:predict`.

    Args:
        url: str. Server root, e.g. `http://localhost:8501`.
        model_name: str. Model name in `models.config`.
        raw: dict of raw feature values.
        version: int. Specific version, or None for the latest.
        timeout: float. Seconds.

    Returns:
        `{output_name: numpy array}`.
    """
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{version}"
    body = json.dumps(predict_request(raw), allow_nan=True).encode("utf-8")
    request = urllib.request.Request(
        url.rstrip("/") + path + ":predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        outputs = json.loads(response.read())["outputs"]
    if not isinstance(outputs, dict):  # a single unnamed output
        outputs = {"output": outputs}
    return {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}
