"""MLServer beside `tffm serve` for `serving_load.py`: venv, runtime, payloads.

MLServer 1.7.1 (Seldon's Python model server) is installed in a venv of its
own under the workdir (its protobuf and FastAPI pins stay out of the
project's venv) and serves the same ONNX file through `RUNTIME`, a custom
runtime around `serving.OnnxPredictor` (the checkout on PYTHONPATH). Its
parallel inference workers (`parallel_workers` >= 1) fail at start-up here
(in each worker: `RuntimeError: There is no current event loop in thread
'MainThread'`; then `WorkerStop ... exit code 256`, with the uvloop 0.23
the venv resolves), so it runs with `parallel_workers: 0`: inference in the
server process, as `tffm serve` without `--num_workers`.
"""

import json
import os
import subprocess
import sys

import numpy as np

MLSERVER = "mlserver==1.7.1"
V2_INFER = "/v2/models/ctr/infer"
V2_GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
RUNTIME = '''"""A custom MLServer runtime serving a tffm raw-input ONNX file."""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest
from mlserver.types import InferenceResponse

from serving import OnnxPredictor


class TffmRuntime(MLModel):
    async def load(self) -> bool:
        uri = self.settings.parameters.uri
        self.predictor = OnnxPredictor(uri, threads=1)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raw = {}
        for tensor in payload.inputs:
            if tensor.datatype == "BYTES":
                raw[tensor.name] = StringCodec.decode_input(tensor)
            else:
                raw[tensor.name] = NumpyCodec.decode_input(tensor)
        outputs = self.predictor.predict(raw)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name, value)
                for name, value in outputs.items()
            ],
        )
'''


def build_venv(workdir: str) -> str:
    """The `mlserver` executable of a venv with MLServer 1.7.1 (made once)."""
    venv = os.path.join(workdir, "mlserver-venv")
    executable = os.path.join(venv, "bin", "mlserver")
    if os.path.exists(executable):
        return executable
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(
        [
            os.path.join(venv, "bin", "pip"),
            "install",
            "-q",
            MLSERVER,
            "onnxruntime",
            "pyfarmhash",
        ],
        check=True,
        timeout=1800,
    )
    return executable


def model_folder(
    workdir: str, onnx_path: str, http_port: int, grpc_port: int, metrics: int
) -> str:
    """A folder `mlserver start` serves: settings, model settings, runtime."""
    folder = os.path.join(workdir, "mlserver-model")
    os.makedirs(folder, exist_ok=True)
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics,
        "parallel_workers": 0,
        "host": "127.0.0.1",
    }
    model = {
        "name": "ctr",
        "implementation": "tffm_runtime.TffmRuntime",
        "parameters": {"uri": onnx_path},
    }
    for name, document in (
        ("settings.json", settings),
        ("model-settings.json", model),
    ):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(document, f)
    with open(os.path.join(folder, "tffm_runtime.py"), "w") as f:
        f.write(RUNTIME)
    return folder


def v2_body(raw: dict[str, list]) -> bytes:
    """A V2 REST infer body of a raw batch (strings BYTES, numbers FP32)."""
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if name.startswith("C") else "FP32",
            "shape": [len(values)],
            "data": values,
        }
        for name, values in raw.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def v2_grpc_request(raw: dict[str, list]) -> bytes:
    """A V2 `ModelInferRequest` of a raw batch, tensors in `contents`."""
    from serving import v2_protos

    request = v2_protos.ModelInferRequest(model_name="ctr")
    for name, values in raw.items():
        tensor = request.inputs.add(name=name, shape=[len(values)])
        if name.startswith("C"):
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(v.encode() for v in values)
        else:
            tensor.datatype = "FP32"
            tensor.contents.fp32_contents.extend(
                np.asarray(values, np.float32).tolist()
            )
    return request.SerializeToString()
