"""The REST app in process (ASGI calls, no socket) on a tiny real ONNX model.

The model is built here with `onnx.helper` (no TensorFlow): one numeric
feature `x`; `logit = table[int(x)] + x` with a two-entry table, so
`x >= 2` makes onnxruntime's Gather fail at run time, the way a real
onnxruntime failure reaches the server.
"""

import asyncio
import concurrent.futures
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import pytest

from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model_config import BatchingParameters
from serving.model_config import ModelConfig
from serving.rest import RestApp
from serving.service import Service
from tffm import constants
from tffm import testing
from tffm.features import Numeric
from tffm.features import features_to_json

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export and serving tests run under TensorFlow",
)
TABLE = [0.25, -0.5]


def write_model(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto
    from onnx import helper

    nodes = [
        helper.make_node("IsNaN", ["x"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "x"], ["xc"]),
        helper.make_node("Cast", ["xc"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["looked_up"]),
        helper.make_node("Add", ["looked_up", "xc"], ["sum"]),
        helper.make_node("Unsqueeze", ["sum", "axis"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1])
            for name in ("probability", "logit")
        ],
        initializer=[
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("table", TensorProto.FLOAT, [2], TABLE),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    for key, value in {
        constants.ONNX_FEATURES: features_to_json([Numeric("x")]),
        constants.ONNX_VERSION: "1",
        constants.ONNX_OUTPUTS: json.dumps(["probability", "logit"]),
    }.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def expected_probability(x):
    logit = np.float32(TABLE[int(x)]) + np.float32(x)
    return 1 / (1 + np.exp(-logit))


async def call(app, method, path, body=b""):
    """(status, headers, JSON body) of one request through the ASGI app."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1234),
    }
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    if headers.get(b"content-type") == b"application/json":
        return sent[0]["status"], headers, json.loads(payload)
    return sent[0]["status"], headers, payload.decode()


def predict_body(*values):
    return json.dumps({"inputs": {"x": list(values)}}).encode()


class RestAppTest(testing.TestCase):
    def make_app(self, batching=None, request_timeout=30.0):
        base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, base)
        os.makedirs(os.path.join(base, "1"))
        write_model(os.path.join(base, "1", "model.onnx"))
        executor = concurrent.futures.ThreadPoolExecutor(2)
        self.addCleanup(executor.shutdown)
        manager = ModelManager(
            [ModelConfig(name="tiny", base_path=base)],
            executor=executor,
            batching=batching,
        )
        manager.poll()
        self.addCleanup(manager.stop)
        self.assertTrue(manager.ready)
        service = Service(manager, Metrics())
        return RestApp(
            service,
            max_body_bytes=1 << 20,
            read_timeout=5.0,
            request_timeout=request_timeout,
        )

    def test_predicts(self):
        app = self.make_app()
        status, _, body = asyncio.run(
            call(app, "POST", "/v1/models/tiny:predict", predict_body(0.5))
        )
        self.assertEqual(status, 200, body)
        self.assertAllClose(
            body["outputs"]["probability"],
            [[expected_probability(0.5)]],
            tol=testing.ORT,
        )

    def test_onnxruntime_failure_is_json_500_and_counted(self):
        app = self.make_app()
        status, headers, body = asyncio.run(
            call(app, "POST", "/v1/models/tiny:predict", predict_body(5.0))
        )
        self.assertEqual(status, 500)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(list(body), ["error"])
        self.assertIn("Internal", body["error"])
        metrics = app.service.metrics.render().decode()
        self.assertIn(
            'tffm_serving_errors_total{code="INTERNAL",model="tiny"} 1.0',
            metrics,
        )
        status, _, _ = asyncio.run(  # and the next request is served
            call(app, "POST", "/v1/models/tiny:predict", predict_body(1.0))
        )
        self.assertEqual(status, 200)

    def test_prediction_past_the_deadline_is_504(self):
        # The batch waits 3 s to fill; the REST deadline is 0.2 s.
        params = BatchingParameters(
            max_batch_size=8, batch_timeout_micros=3_000_000,
            max_enqueued_batches=10, num_batch_threads=1,
        )  # fmt: skip
        app = self.make_app(batching=params, request_timeout=0.2)
        start = time.monotonic()
        status, _, body = asyncio.run(
            call(app, "POST", "/v1/models/tiny:predict", predict_body(0.5))
        )
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertEqual(status, 504, body)
        self.assertIn("DEADLINE", body["error"].upper())
        self.assertIn("--rest_api_timeout_in_ms", body["error"])

    def test_unknown_model_names_share_one_metrics_label(self):
        app = self.make_app()
        for name in ("a1", "b2", "c3"):
            status, _, _ = asyncio.run(
                call(app, "POST", f"/v1/models/{name}:predict", predict_body(1))
            )
            self.assertEqual(status, 404)
        metrics = app.service.metrics.render().decode()
        self.assertIn('model="_unknown"', metrics)
        for name in ("a1", "b2", "c3"):
            self.assertNotIn(f'model="{name}"', metrics)

    def test_paths_outside_v1(self):
        app = self.make_app()
        for method in ("GET", "POST", "PUT", "DELETE"):
            status, _, body = asyncio.run(call(app, method, "/nothing"))
            self.assertEqual(status, 404, method)  # as TF Serving, any method
            self.assertIn("Not found", body["error"])
        status, headers, _ = asyncio.run(call(app, "POST", "/healthz"))
        self.assertEqual(status, 405)
        self.assertEqual(headers[b"allow"], b"GET, HEAD")
        self.assertEqual(asyncio.run(call(app, "GET", "/healthz"))[0], 200)
