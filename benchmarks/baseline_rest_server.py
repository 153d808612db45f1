"""The old REST server (stdlib `http.server`, one global lock): a baseline.

Kept unchanged from `serving/rest_server.py` (replaced by `tffm serve`) so
`benchmarks/serving_load.py` measures it in the same run as the new server.

A TF Serving-compatible REST endpoint over onnxruntime (no TensorFlow).

Speaks the subset of TF Serving's REST API that predict clients use:
- `GET  /v1/models/<name>`: version status;
- `POST /v1/models/<name>[/versions/<v>]:predict` with either the columnar
  `{"inputs": {feature: [...]}}` or the row `{"instances": [{...}, ...]}`
  body; answers `{"outputs": {...}}` or `{"predictions": [{...}, ...]}`.
Bad input is answered with HTTP 400 and `{"error": "..."}` naming the
feature, as TF Serving does.

Run: `python benchmarks/baseline_rest_server.py --model exported/onnx/ctr-1.onnx
--name ctr --port 8501` (binds 127.0.0.1 unless `--host` says otherwise).
"""

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np

from serving.onnx_predictor import OnnxPredictor

_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")


def make_server(
    predictor: OnnxPredictor, name: str, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """An HTTP server answering TF Serving REST calls for one model.

    Args:
        predictor: the loaded ONNX model.
        name: str. Model name in the URL.
        host: str. Address to bind (loopback by default).
        port: int. Port (0: any free one; see `server.server_address`).

    Returns:
        The server; call `serve_forever()` (or run it in a thread).
    """
    lock = threading.Lock()  # one onnxruntime run at a time per session

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            match = _STATUS.match(self.path)
            if not match or match.group(1) != name:
                return self._send(404, {"error": f"No model at {self.path}"})
            version = str(predictor.version)
            self._send(
                200,
                {
                    "model_version_status": [
                        {
                            "version": version,
                            "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""},
                        }
                    ]
                },
            )

        def do_POST(self) -> None:  # noqa: N802
            match = _PREDICT.match(self.path)
            if not match or match.group(1) != name:
                return self._send(404, {"error": f"No model at {self.path}"})
            if match.group(2) and int(match.group(2)) != predictor.version:
                return self._send(
                    404,
                    {
                        "error": f"Servable {name} version "
                        f"{match.group(2)} not found (serving version "
                        f"{predictor.version})"
                    },
                )
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                rows = "instances" in body
                raw = _columns(body)
                with lock:
                    outputs = predictor.predict(raw)
            except (ValueError, TypeError, KeyError) as error:
                return self._send(400, {"error": str(error)})
            if rows:
                names = list(outputs)
                count = len(outputs[names[0]])
                self._send(
                    200,
                    {
                        "predictions": [
                            {k: outputs[k][i].tolist() for k in names}
                            for i in range(count)
                        ]
                    },
                )
            else:
                self._send(
                    200,
                    {"outputs": {k: v.tolist() for k, v in outputs.items()}},
                )

        def log_message(self, *args: Any) -> None:
            """Keeps stderr quiet: no line per request."""

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer((host, port), Handler)


def _columns(body: dict[str, Any]) -> dict[str, np.ndarray]:
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            raise ValueError('"inputs" must map feature names to lists.')
        return {k: _array(k, v) for k, v in inputs.items()}
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ValueError('The body needs "inputs" or a non-empty "instances".')
    names = list(instances[0])
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or set(row) != set(names):
            raise ValueError(
                f"instances[{i}] has other features than instances[0]: {names}"
            )
    return {k: _array(k, [row[k] for row in instances]) for k in names}


def _array(name: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError:
        raise ValueError(
            f"Feature {name!r}: lists must be padded to one length "
            '(with "" or -1).'
        ) from None
    if array.dtype.kind == "U":
        array = array.astype(object)
    return array


def main() -> None:
    """Command line: serve one ONNX model until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="raw-input .onnx")
    parser.add_argument("--name", required=True, help="model name in URLs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args()
    server = make_server(
        OnnxPredictor(args.model), args.name, args.host, args.port
    )
    print(f"Serving {args.name} on http://{args.host}:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
