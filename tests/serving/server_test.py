import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from tffm import testing

from .conftest import FEATURES
from .conftest import MAX_BATCH_SIZE
from .conftest import keras_outputs

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export and serving tests run under TensorFlow",
)
DTYPES = {"string": "DT_STRING", "int64": "DT_INT64", "float32": "DT_FLOAT"}


def http(url, body=None, method=None, timeout=30):
    """(status, parsed JSON body) of one request; errors included."""
    data = body if isinstance(body, bytes | type(None)) else json.dumps(body)
    if isinstance(data, str):
        data = data.encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def batch(size, seed):
    from export.edge_cases import edge_case_batch

    return edge_case_batch(FEATURES, size, seed=seed)


def rows(raw):
    size = len(next(iter(raw.values())))
    return [
        {k: np.asarray(v[i]).tolist() for k, v in raw.items()}
        for i in range(size)
    ]


@pytest.mark.usefixtures("server", "trained")
class ServerTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, server, trained):
        self.server = server
        self.model = trained
        self.url = server["url"]

    def assert_still_serving(self):
        raw = batch(3, seed=1)
        status, body = http(
            self.url + "/v1/models/ctr/versions/3:predict",
            {"inputs": {k: v.tolist() for k, v in raw.items()}},
        )
        self.assertEqual(status, 200, body)
        self.assertAllClose(
            body["outputs"]["probability"],
            keras_outputs(self.model, raw)["probability"],
            tol=testing.ORT,
        )

    def test_rest_columns_and_rows_match_keras(self):
        from serving import Client

        raw = batch(40, seed=9)
        expected = keras_outputs(self.model, raw)
        client = Client(self.server["rest"], "ctr", version=3)
        out = client.predict(raw)
        for name in ("probability", "logit"):
            self.assertAllClose(out[name], expected[name], tol=testing.ORT)
            self.assertEqual(out[name].shape, (40, 1))
        status, body = http(
            self.url + "/v1/models/ctr/versions/3:predict",
            {"instances": rows(raw)},
        )
        self.assertEqual(status, 200, body)
        self.assertAllClose(
            [p["probability"] for p in body["predictions"]],
            expected["probability"],
            tol=testing.ORT,
        )
        self.assertAllClose(
            [p["logit"] for p in body["predictions"]],
            expected["logit"],
            tol=testing.ORT,
        )

    def test_b64_strings_and_signature_name(self):
        import base64

        raw = batch(4, seed=2)
        expected = keras_outputs(self.model, raw)
        inputs = {k: v.tolist() for k, v in raw.items()}
        inputs["city"] = [
            {"b64": base64.b64encode(v.encode()).decode()}
            for v in inputs["city"]
        ]
        status, body = http(
            self.url + "/v1/models/ctr/labels/none:predict",
            {"signature_name": "serving_default", "inputs": inputs},
        )
        self.assertEqual(status, 400)  # no such label in models.config
        status, body = http(
            self.url + "/v1/models/ctr/versions/3:predict",
            {"signature_name": "serving_default", "inputs": inputs},
        )
        self.assertEqual(status, 200, body)
        self.assertAllClose(
            body["outputs"]["probability"],
            expected["probability"],
            tol=testing.ORT,
        )

    def test_official_grpc_stub_matches_keras(self):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        raw = batch(25, seed=4)
        expected = keras_outputs(self.model, raw)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "ctr"
        request.model_spec.version.value = 3  # a later test adds version 4
        request.model_spec.signature_name = "serving_default"
        for name, values in raw.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        with grpc.insecure_channel(self.server["grpc"]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=30)
            self.assertEqual(response.model_spec.version.value, 3)
            for name in ("probability", "logit"):
                got = tf.make_ndarray(response.outputs[name])
                self.assertEqual(got.dtype, np.float32)
                self.assertAllClose(got, expected[name], tol=testing.ORT)
            # An error is a gRPC status with TF Serving's wording.
            request.model_spec.name = "nope"
            with self.assertRaises(grpc.RpcError) as error:
                stub.Predict(request, timeout=30)
            self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertIn("Specific(nope, 3)", error.exception.details())

    def test_client_grpc_transport(self):
        from serving import Client
        from serving import ServingError

        raw = batch(7, seed=5)
        expected = keras_outputs(self.model, raw)
        client = Client(self.server["grpc"], "ctr", transport="grpc", version=3)
        out = client.predict(raw)
        self.assertAllClose(
            out["probability"], expected["probability"], tol=testing.ORT
        )
        self.assertEqual(client.status()[0]["state"], "AVAILABLE")
        self.assertEqual(
            set(client.metadata()["inputs"]), {f.name for f in FEATURES}
        )
        bad = dict(raw, city=np.array([1.5] * 7))
        with self.assertRaises(ServingError) as error:
            client.predict(bad)
        self.assertEqual(error.exception.code, "INVALID_ARGUMENT")
        self.assertIn("'city'", error.exception.message)
        client.close()

    def test_metadata_lists_every_feature(self):
        import grpc
        from tensorflow_serving.apis import get_model_metadata_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        status, body = http(self.url + "/v1/models/ctr/metadata")
        self.assertEqual(status, 200, body)
        self.assertIn(body["model_spec"]["version"], ("3", "4"))
        signature = body["metadata"]["signature_def"]["signature_def"][
            "serving_default"
        ]
        self.assertEqual(signature["method_name"], "tensorflow/serving/predict")
        for feature in FEATURES:
            info = signature["inputs"][feature.name]
            self.assertEqual(info["dtype"], DTYPES[feature.dtype])
            dims = [d["size"] for d in info["tensor_shape"]["dim"]]
            self.assertEqual(dims, ["-1"] * (1 + len(feature.shape)))
        self.assertEqual(set(signature["outputs"]), {"probability", "logit"})
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"]
        )
        request.model_spec.name = "ctr"
        with grpc.insecure_channel(self.server["grpc"]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        inputs = signatures.signature_def["serving_default"].inputs
        self.assertEqual(set(inputs), {f.name for f in FEATURES})

    def test_status_health_and_metrics(self):
        import grpc
        from grpc_health.v1 import health_pb2
        from grpc_health.v1 import health_pb2_grpc
        from tensorflow_serving.apis import get_model_status_pb2
        from tensorflow_serving.apis import model_service_pb2_grpc

        status, body = http(self.url + "/v1/models/ctr/versions/3")
        self.assertEqual(status, 200)
        self.assertEqual(
            body["model_version_status"][0],
            {
                "version": "3",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        )
        with grpc.insecure_channel(self.server["grpc"]) as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "ctr"
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            response = stub.GetModelStatus(request, timeout=30)
            self.assertEqual(response.model_version_status[0].state, 30)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            self.assertEqual(
                health.status, health_pb2.HealthCheckResponse.SERVING
            )
        self.assertEqual(http(self.url + "/healthz")[0], 200)
        self.assertEqual(http(self.url + "/readyz")[0], 200)
        with urllib.request.urlopen(self.url + "/metrics") as response:
            text = response.read().decode()
        self.assertIn('tffm_serving_requests_total{api="status"', text)
        self.assertIn("tffm_serving_request_latency_seconds_bucket", text)
        self.assertIn("tffm_serving_batch_size_bucket", text)

    @parameterized.named_parameters(
        (
            "malformed_json",
            "POST",
            ":predict",
            b'{"inputs": ',
            400,
            "JSON Parse error",
        ),
        ("array_body", "POST", ":predict", b"[1, 2]", 400, "Is not object"),
        ("string_body", "POST", ":predict", b'"abc"', 400, "Is not object"),
        ("empty_body", "POST", ":predict", b"", 400, "document is empty"),
        (
            "missing_feature",
            "POST",
            ":predict",
            "drop:price",
            400,
            "Missing named input: price",
        ),
        (
            "extra_feature",
            "POST",
            ":predict",
            "add:colour",
            400,
            "Sent extra: {colour}",
        ),
        (
            "wrong_type",
            "POST",
            ":predict",
            "set:city=1.5",
            400,
            "'city' takes strings",
        ),
        (
            "wrong_rank",
            "POST",
            ":predict",
            "set:tags=x",
            400,
            "'tags' must have shape",
        ),
        (
            "empty_instances",
            "POST",
            ":predict",
            b'{"instances": []}',
            400,
            "No values in 'instances'",
        ),
        (
            "both_forms",
            "POST",
            ":predict",
            b'{"instances": [{}], "inputs": {}}',
            400,
            "only one of 'inputs' or 'instances'",
        ),
        (
            "row_keys",
            "POST",
            ":predict",
            b'{"instances": [{"city": "a"}]}',
            400,
            "keys must be equal to",
        ),
        ("bad_b64", "POST", ":predict", "set:city=b64", 400, "base64"),
        (
            "unknown_model",
            "POST",
            "/v1/models/nope:predict",
            "good",
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "unknown_version",
            "POST",
            "/v1/models/ctr/versions/7:predict",
            "good",
            404,
            "Specific(ctr, 7)",
        ),
        (
            "unknown_version_status",
            "GET",
            "/v1/models/ctr/versions/7",
            None,
            404,
            "Could not find version 7 of model ctr",
        ),
        (
            "unknown_signature",
            "POST",
            ":predict",
            "signature:nope",
            400,
            'Serving signature name: "nope" not found',
        ),
        (
            "over_max_batch_size",
            "POST",
            ":predict",
            "big",
            400,
            f"larger than maximum input batch size {MAX_BATCH_SIZE}",
        ),
        (
            "put",
            "PUT",
            "/v1/models/ctr",
            b"{}",
            400,
            "Malformed request: PUT /v1/models/ctr",
        ),
        (
            "delete",
            "DELETE",
            "/v1/models/ctr",
            None,
            400,
            "Malformed request: DELETE",
        ),
        ("get_predict", "GET", ":predict", None, 400, "Malformed request: GET"),
        (
            "classify",
            "POST",
            "/v1/models/ctr:classify",
            "good",
            400,
            "classify signature",
        ),
        ("unknown_path", "GET", "/nothing", None, 404, "Not found"),
        ("post_unknown_path", "POST", "/nothing", b"{}", 404, "Not found"),
        (
            "infinite_number",
            "POST",
            ":predict",
            "number:price=inf",
            400,
            "Feature 'price': row 0 is infinite",
        ),
        (
            "beyond_float32",
            "POST",
            ":predict",
            "number:score=1e308",
            400,
            "Feature 'score': row 0 is infinite or beyond float32",
        ),
    )
    def test_bad_request(self, method, path, body, status, message):
        raw = batch(3, seed=1)
        good = {"inputs": {k: v.tolist() for k, v in raw.items()}}
        if path == ":predict":
            path = "/v1/models/ctr:predict"
        if isinstance(body, str):
            action, _, arg = body.partition(":")
            document = json.loads(json.dumps(good))
            if action == "drop":
                del document["inputs"][arg]
            elif action == "add":
                document["inputs"][arg] = ["red"] * 3
            elif action == "set":
                name, value = arg.split("=")
                document["inputs"][name] = (
                    [{"b64": "!!!"}] * 3
                    if value == "b64"
                    else [1.5 if value == "1.5" else value] * 3
                )
            elif action == "number":  # json.dumps writes inf as Infinity
                name, value = arg.split("=")
                document["inputs"][name] = [float(value)] * 3
            elif action == "signature":
                document["signature_name"] = arg
            elif action == "big":
                big = batch(MAX_BATCH_SIZE + 1, seed=2)
                document = {"inputs": {k: v.tolist() for k, v in big.items()}}
            body = json.dumps(document).encode()
        got, answer = http(self.url + path, body, method=method)
        self.assertEqual(got, status, answer)
        self.assertEqual(list(answer), ["error"])
        self.assertIn(message, answer["error"])
        self.assert_still_serving()

    def test_grpc_infinite_numbers_are_invalid_argument(self):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        raw = batch(3, seed=6)
        with grpc.insecure_channel(self.server["grpc"]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for name, value, dtype in (
                ("price", np.inf, np.float32),
                ("score", -np.inf, np.float32),
                ("score", 1e308, np.float64),  # beyond float32
            ):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "ctr"
                request.model_spec.version.value = 3
                bad = dict(raw, **{name: np.array([0.5, value, 1.0], dtype)})
                for key, values in bad.items():
                    request.inputs[key].CopyFrom(tf.make_tensor_proto(values))
                with self.assertRaises(grpc.RpcError) as error:
                    stub.Predict(request, timeout=30)
                self.assertEqual(
                    error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT
                )
                self.assertIn(
                    f"Feature {name!r}: row 1 is infinite",
                    error.exception.details(),
                )
        self.assert_still_serving()

    def test_50_mb_streamed_body_is_refused_and_memory_stays_bounded(self):
        # Sent chunked (no Content-Length), so the server must count the
        # bytes as they come and stop reading at its 16 MiB limit.
        import select
        import socket

        host, port = self.server["rest"].split(":")
        pid = self.server["process"].pid
        before_kb = _rss_kb(pid)
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(
            b"POST /v1/models/ctr:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * (1 << 20)
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        sent, answer = 0, b""
        try:
            while sent < 50 << 20:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # the server answered: stop sending
                    break
                sock.sendall(framed)
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed its side
            pass
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(
                [
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ][0]
            )
            while len(rest) < length:
                data = sock.recv(65536)
                if not data:
                    break
                rest += data
        finally:
            sock.close()
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head)
        self.assertIn(b"exceeds the limit", rest)
        self.assertLess(sent, 50 << 20)  # refused before the end
        growth_kb = _rss_kb(pid) - before_kb
        self.assertLess(growth_kb, 50 << 10)  # reading it would cost 50 MB
        self.assert_still_serving()

    def test_new_version_directory_is_served_without_restart(self):
        import tffm
        from export import export_onnx

        keras.utils.set_random_seed(1)
        other = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[8])
        staging = str(self.server["base"] / "staging.onnx")
        export_onnx(other, staging, version=4)
        os.makedirs(self.server["base"] / "ctr" / "4")
        os.replace(staging, self.server["base"] / "ctr" / "4" / "model.onnx")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = http(self.url + "/v1/models/ctr/versions/4")
            if (
                status == 200
                and body["model_version_status"][0]["state"] == "AVAILABLE"
            ):
                break
            time.sleep(0.2)
        raw = batch(10, seed=8)
        status, body = http(
            self.url + "/v1/models/ctr:predict",
            {"inputs": {k: v.tolist() for k, v in raw.items()}},
        )
        self.assertEqual(status, 200, body)
        self.assertAllClose(
            body["outputs"]["probability"],
            keras_outputs(other, raw)["probability"],
            tol=testing.ORT,
        )
        # Version 3 is still served (latest { num_versions: 2 }).
        status, _ = http(
            self.url + "/v1/models/ctr/versions/3:predict",
            {"inputs": {k: v.tolist() for k, v in raw.items()}},
        )
        self.assertEqual(status, 200)


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_sigterm_stops_grpc_and_rest_together(onnx_file, tmp_path_factory):
    """New gRPC calls are refused at once while a REST request drains."""
    import shutil
    import signal
    import socket

    import grpc
    from tensorflow_serving.apis import get_model_status_pb2
    from tensorflow_serving.apis import model_service_pb2_grpc

    from .conftest import start_server

    base = tmp_path_factory.mktemp("shutdown")
    os.makedirs(base / "ctr" / "3")
    shutil.copy(onnx_file, base / "ctr" / "3" / "model.onnx")
    info = start_server(
        base,
        [
            f"--model_base_path={base / 'ctr'}",
            "--model_name=ctr",
            "--grace_seconds=5",
        ],
    )
    process = info["process"]
    raw = batch(2, seed=3)
    body = json.dumps({"inputs": {k: v.tolist() for k, v in raw.items()}})
    body = body.encode()
    host, port = info["rest"].split(":")
    try:
        # A REST request in flight: headers sent, the body not yet.
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(
            b"POST /v1/models/ctr:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "ctr"
        with grpc.insecure_channel(info["grpc"]) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as error:
                stub.GetModelStatus(request, timeout=2)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - start < 1.5
        # The REST request in flight still finishes.
        sock.sendall(body[10:])
        answer = b""
        while b"}}" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        info["log_file"].close()


@pytest.mark.slow
def test_worker_processes_share_the_ports_and_the_metrics(
    onnx_file, tmp_path_factory
):
    import shutil
    import signal

    from serving import Client

    from .conftest import start_server

    base = tmp_path_factory.mktemp("workers")
    os.makedirs(base / "ctr" / "3")
    shutil.copy(onnx_file, base / "ctr" / "3" / "model.onnx")
    info = start_server(
        base,
        [
            f"--model_base_path={base / 'ctr'}",
            "--model_name=ctr",
            "--num_workers=2",
        ],  # fmt: skip
    )
    process = info["process"]
    try:
        raw = batch(5, seed=7)
        rest = Client(info["rest"], "ctr")
        grpc_client = Client(info["grpc"], "ctr", transport="grpc")
        expected = rest.predict(raw)["probability"]
        clients = [Client(info["rest"], "ctr") for _ in range(8)]
        for client in clients:  # new connections: spread by the kernel
            np.testing.assert_allclose(client.predict(raw)["probability"],
                                       expected, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(
            grpc_client.predict(raw)["probability"], expected, atol=1e-6
        )
        time.sleep(1.5)  # the workers share their counts every second
        with urllib.request.urlopen(info["url"] + "/metrics") as response:
            text = response.read().decode()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("tffm_serving_requests_total{")
            and 'api="predict"' in line
        )
        assert counted == 10, text  # 9 REST + 1 gRPC, whichever worker
        pids = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(pids) >= 2
        grpc_client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]


def _children(pid):
    """The worker processes of server `pid` (multiprocessing's tracker not)."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    workers = set()
    for child in found:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"resource_tracker" not in f.read():
                    workers.add(int(child))
        except OSError:
            pass
    return workers


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_model_that_cannot_load_at_start_up_ends_the_server(tmp_path):
    """Exit 1 naming the file, one process or workers, nothing left over."""
    from .conftest import ROOT
    from .conftest import free_port

    broken = tmp_path / "ctr" / "1" / "model.onnx"
    os.makedirs(broken.parent)
    broken.write_bytes(b"not an onnx file")
    runs = []
    for workers in (1, 2):
        log = tmp_path / f"log-{workers}.txt"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "serving",
                    f"--model_base_path={tmp_path / 'ctr'}",
                    f"--num_workers={workers}",
                    f"--port={free_port()}",
                    f"--rest_api_port={free_port()}",
                    "--host=127.0.0.1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=ROOT),
            )
        runs.append((process, log))
    for process, log in runs:
        try:
            code = process.wait(90)
        finally:
            if process.poll() is None:
                process.kill()
        text = log.read_text()
        assert code == 1, text[-3000:]
        assert f"Loading {broken}" in text, text[-3000:]
        assert "cannot be served, stopping" in text, text[-3000:]
        assert not _children(process.pid)


def test_broken_new_version_keeps_the_serving_one(onnx_file, tmp_path):
    """A failed version shows its error; a good one rolls in under load."""
    import shutil
    import signal
    import threading

    from serving import Client

    from .conftest import start_server

    os.makedirs(tmp_path / "ctr" / "3")
    shutil.copy(onnx_file, tmp_path / "ctr" / "3" / "model.onnx")
    info = start_server(
        tmp_path,
        [
            f"--model_base_path={tmp_path / 'ctr'}",
            "--model_name=ctr",
            "--file_system_poll_wait_seconds=0.2",
        ],
    )
    process = info["process"]
    raw = batch(3, seed=2)
    body = {"inputs": {k: v.tolist() for k, v in raw.items()}}

    def states():
        status, answer = http(info["url"] + "/v1/models/ctr")
        assert status == 200, answer
        return {
            int(v["version"]): (v["state"], v["status"]["error_message"])
            for v in answer["model_version_status"]
        }

    def wait_for(check):
        deadline = time.monotonic() + 30
        while not check(states()):
            assert time.monotonic() < deadline, states()
            time.sleep(0.1)

    def stage(version, source):  # written beside, then moved in
        staging = tmp_path / f"staging-{version}"
        os.makedirs(staging)
        if source is None:
            (staging / "model.onnx").write_bytes(b"\x08\x07broken")
        else:
            shutil.copy(source, staging / "model.onnx")
        os.rename(staging, tmp_path / "ctr" / str(version))

    failures = []
    answered = []
    stop = threading.Event()

    def load():
        client = Client(info["rest"], "ctr")
        while not stop.is_set():
            try:
                client.predict(raw)
                answered.append(1)
            except Exception as error:  # noqa: BLE001 (counted)
                failures.append(repr(error))

    try:
        stage(4, None)
        wait_for(lambda s: s.get(4, ("", ""))[0] == "END")
        got = states()
        assert got[3] == ("AVAILABLE", ""), got
        assert str(tmp_path / "ctr" / "4" / "model.onnx") in got[4][1], got
        status, answer = http(info["url"] + "/v1/models/ctr:predict", body)
        assert status == 200, answer
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        stage(5, onnx_file)
        wait_for(lambda s: s.get(3, ("", ""))[0] == "END")
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert states()[5] == ("AVAILABLE", "")
        assert not failures, failures[:3]
        assert len(answered) > 10
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]


@pytest.mark.slow
def test_killed_worker_is_replaced(trained, onnx_file, tmp_path):
    """SIGKILL of one of two workers: a new one serves; no process leaks."""
    import shutil
    import signal

    from serving import Client

    from .conftest import start_server

    os.makedirs(tmp_path / "ctr" / "3")
    shutil.copy(onnx_file, tmp_path / "ctr" / "3" / "model.onnx")
    info = start_server(
        tmp_path,
        [
            f"--model_base_path={tmp_path / 'ctr'}",
            "--model_name=ctr",
            "--num_workers=2",
        ],
    )
    process = info["process"]
    raw = batch(2, seed=4)
    seen = set()
    try:
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        before = _children(process.pid)
        seen |= before
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            now = _children(process.pid)
            seen |= now
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        expected = keras_outputs(trained, raw)["probability"]
        for _ in range(12):  # new connections, spread over both workers
            np.testing.assert_allclose(
                Client(info["rest"], "ctr").predict(raw)["probability"],
                expected,
                atol=1e-6,
            )
        assert "was killed by signal 9" in info["log"].read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]
    assert not [pid for pid in seen if _alive(pid)]


def _self_signed():
    """A key and a self-signed certificate for 127.0.0.1 (PEM text)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem


def test_ssl_and_monitoring_config_files(onnx_file, tmp_path):
    """gRPC over TLS with client verification; metrics at the given path."""
    import shutil
    import signal

    import grpc

    from serving import v2_protos

    from .conftest import start_server

    key, cert = _self_signed()

    def text(pem):
        return '"' + pem.replace("\n", "\\n") + '"'

    ssl_config = tmp_path / "ssl.config"
    ssl_config.write_text(
        f"server_key: {text(key)}\nserver_cert: {text(cert)}\n"
        f"custom_ca: {text(cert)}\nclient_verify: true\n"
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        'prometheus_config {\n  enable: true\n  path: "/stats/prometheus"\n}\n'
    )
    os.makedirs(tmp_path / "ctr" / "3")
    shutil.copy(onnx_file, tmp_path / "ctr" / "3" / "model.onnx")
    info = start_server(
        tmp_path,
        [
            f"--model_base_path={tmp_path / 'ctr'}",
            "--model_name=ctr",
            f"--ssl_config_file={ssl_config}",
            f"--monitoring_config_file={monitoring}",
        ],
    )
    process = info["process"]

    def server_ready(channel):
        call = channel.unary_unary(
            f"/{v2_protos.SERVICE}/ModelMetadata",
            request_serializer=v2_protos.MESSAGES[
                "ModelMetadataRequest"
            ].SerializeToString,
            response_deserializer=v2_protos.ModelMetadataResponse.FromString,
        )
        return call(v2_protos.MESSAGES["ModelMetadataRequest"](name="ctr"),
                    timeout=10)  # fmt: skip

    try:
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=cert.encode(),
            private_key=key.encode(),
            certificate_chain=cert.encode(),
        )
        with grpc.secure_channel(info["grpc"], with_cert) as channel:
            assert list(server_ready(channel).versions) == ["3"]
        without_cert = grpc.ssl_channel_credentials(cert.encode())
        for channel in (
            grpc.secure_channel(info["grpc"], without_cert),
            grpc.insecure_channel(info["grpc"]),
        ):
            with channel, pytest.raises(grpc.RpcError) as error:
                server_ready(channel)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with urllib.request.urlopen(info["url"] + "/stats/prometheus") as r:
            assert "tffm_serving_requests_total" in r.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(info["url"] + "/metrics")
        assert missing.value.code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]


def test_reload_config_request_swaps_the_models(trained, onnx_file, tmp_path):
    """ModelService.HandleReloadConfigRequest with TF Serving's own stub."""
    import shutil
    import signal

    import grpc
    from tensorflow_serving.apis import get_model_status_pb2
    from tensorflow_serving.apis import model_management_pb2
    from tensorflow_serving.apis import model_service_pb2_grpc

    from serving import Client

    from .conftest import start_server

    os.makedirs(tmp_path / "ctr" / "3")
    shutil.copy(onnx_file, tmp_path / "ctr" / "3" / "model.onnx")
    os.makedirs(tmp_path / "broken" / "1")
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"broken")
    info = start_server(
        tmp_path, [f"--model_base_path={tmp_path / 'ctr'}", "--model_name=ctr"]
    )
    process = info["process"]
    raw = batch(3, seed=8)

    def reload(models):
        request = model_management_pb2.ReloadConfigRequest()
        for name, base, num_versions in models:
            config = request.config.model_config_list.config.add()
            config.name = name
            config.base_path = str(base)
            config.model_platform = "tensorflow"
            config.model_version_policy.latest.num_versions = num_versions
        return stub.HandleReloadConfigRequest(request, timeout=60)

    try:
        channel = grpc.insecure_channel(info["grpc"])
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = reload([("fresh", tmp_path / "ctr", 1)])
        assert response.status.error_code == 0
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "fresh"
        versions = stub.GetModelStatus(status, timeout=10).model_version_status
        assert [(v.version, v.state) for v in versions] == [(3, 30)]
        np.testing.assert_allclose(
            Client(info["rest"], "fresh").predict(raw)["probability"],
            keras_outputs(trained, raw)["probability"],
            atol=1e-5,
        )
        code, body = http(info["url"] + "/v1/models/ctr")
        assert code == 404, body  # left out of the new config: unloaded
        with pytest.raises(grpc.RpcError) as error:
            reload(
                [
                    ("fresh", tmp_path / "ctr", 1),
                    ("bad", tmp_path / "broken", 1),
                ]
            )
        assert error.value.code() == grpc.StatusCode.UNKNOWN
        assert str(tmp_path / "broken" / "1" / "model.onnx") in (
            error.value.details()
        )
        custom = model_management_pb2.ReloadConfigRequest()
        custom.config.custom_model_config.type_url = "x/y"
        with pytest.raises(grpc.RpcError) as error:
            stub.HandleReloadConfigRequest(custom, timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Only ModelConfigList" in error.value.details()
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]
