"""`tffm serve` from a fresh venv with only `.[serving]`: REST, gRPC, V2."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import keras
import numpy as np
import pytest

from tffm import testing

from ..fixtures import serving_venv
from .conftest import FEATURES
from .conftest import free_port
from .conftest import keras_outputs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="export and serving tests run under TensorFlow",
    ),
]


def _post(url, document):
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _close(got, expected):
    atol, rtol = testing.ORT
    np.testing.assert_allclose(np.asarray(got), expected, atol=atol, rtol=rtol)


def test_serving_extra_alone_serves_rest_grpc_and_v2(
    trained, onnx_file, tmp_path
):
    from export.edge_cases import edge_case_batch
    from serving import Client

    bin_folder = serving_venv(tmp_path / "edge")

    os.makedirs(tmp_path / "models" / "ctr" / "3")
    shutil.copy(onnx_file, tmp_path / "models" / "ctr" / "3" / "model.onnx")
    grpc_port, rest_port = free_port(), free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                str(bin_folder / "tffm"),
                "serve",
                f"--model_base_path={tmp_path / 'models' / 'ctr'}",
                "--model_name=ctr",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                "--host=127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),  # outside the checkout: the installed code
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    url = f"http://127.0.0.1:{rest_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        raw = edge_case_batch(FEATURES, 5, seed=9)
        raw["score"] = np.clip(raw["score"], -5, 5)
        raw["price"] = np.nan_to_num(raw["price"], nan=1.0)
        expected = keras_outputs(trained, raw)["probability"]
        rest = _post(
            url + "/v1/models/ctr:predict",
            {"inputs": {k: np.asarray(v).tolist() for k, v in raw.items()}},
        )
        _close(rest["outputs"]["probability"], expected)
        client = Client(f"127.0.0.1:{grpc_port}", "ctr", transport="grpc")
        got = client.predict(raw)["probability"]
        client.close()
        _close(got, expected)
        inputs = []
        for feature in FEATURES:
            values = np.asarray(raw[feature.name])
            inputs.append(
                {
                    "name": feature.name,
                    "datatype": {
                        "string": "BYTES",
                        "int64": "INT64",
                        "float32": "FP32",
                    }[feature.dtype],
                    "shape": list(values.shape),
                    "data": values.reshape(-1).tolist(),
                }
            )
        v2 = _post(url + "/v2/models/ctr/infer", {"inputs": inputs})
        output = next(o for o in v2["outputs"] if o["name"] == "probability")
        _close(np.array(output["data"]).reshape(5, 1), expected)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, log_path.read_text()[-3000:]
