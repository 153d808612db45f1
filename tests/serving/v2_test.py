"""The Open Inference Protocol (KServe V2) on `tffm serve`, with tritonclient.

`tritonclient[http,grpc]` 2.73 declares `protobuf<7`, which would downgrade
the protobuf that `grpcio-health-checking` needs; it runs with protobuf 7,
so it is installed here with `pip install --no-deps --target` (plus its
HTTP transport, geventhttpclient, which does not touch protobuf) into a
folder of its own, and runs in a subprocess over this venv's numpy, grpcio
and protobuf. The folder is kept in pytest's cache between runs.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from absl.testing import parameterized

from serving import v2_protos
from tffm import testing

from .conftest import FEATURES
from .conftest import keras_outputs

TRITONCLIENT = "tritonclient==2.73.0"
STRINGS = ("city", "ad_id", "tags", "history")


def _v2_inputs(raw):
    """V2 JSON input tensors of a raw batch (lists as `[batch, length]`)."""
    tensors = []
    for feature in FEATURES:
        values = np.asarray(raw[feature.name])
        datatype = {"string": "BYTES", "int64": "INT64", "float32": "FP32"}[
            feature.dtype
        ]
        data = values.reshape(-1).tolist()
        if feature.dtype == "float32":
            data = [None if np.isnan(v) else v for v in data]
        tensors.append(
            {
                "name": feature.name,
                "datatype": datatype,
                "shape": list(values.shape),
                "data": data,
            }
        )
    return tensors


def _numbers_without_nan(raw):
    """`raw` with NaN replaced (V2 JSON has no NaN; tested over gRPC)."""
    out = dict(raw)
    for feature in FEATURES:
        if feature.dtype == "float32":
            out[feature.name] = np.nan_to_num(
                np.asarray(raw[feature.name], dtype=np.float32), nan=0.5
            )
    return out


def _post(url, body, headers=None):
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _bytes_tensor(values):
    return b"".join(
        struct.pack("<I", len(v.encode())) + v.encode() for v in values
    )


@pytest.fixture(scope="module")
def raw_batch():
    from export.edge_cases import edge_case_batch

    raw = edge_case_batch(FEATURES, 6, seed=5)
    raw["score"] = np.clip(raw["score"], -5, 5)
    return _numbers_without_nan(raw)


@pytest.fixture(scope="module")
def tritonclient_path(request):
    """A folder holding tritonclient (without its protobuf pin)."""
    folder = request.config.cache.mkdir("tritonclient-2.73.0")
    marker = folder / "installed"
    if not marker.exists():
        pip = [sys.executable, "-m", "pip", "install", "-q", "--target"]
        for args in (
            ["--no-deps", TRITONCLIENT],
            ["geventhttpclient>=2.3.3", "greenlet<3.4", "python-rapidjson"],
        ):
            done = subprocess.run(
                [*pip, str(folder), *args],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                pytest.fail(f"pip install {args}: {done.stderr[-2000:]}")
        marker.write_text("ok")
    return str(folder)


@pytest.mark.usefixtures("server", "trained")
class V2RestTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, server, trained, raw_batch):
        self.url = server["url"]
        self.model = trained
        self.raw = raw_batch
        self.expected = keras_outputs(trained, raw_batch)

    def test_json_infer_matches_keras(self):
        body = json.dumps({"id": "r1", "inputs": _v2_inputs(self.raw)})
        status, _, answer = _post(
            self.url + "/v2/models/ctr/infer", body.encode()
        )
        self.assertEqual(status, 200, answer)
        document = json.loads(answer)
        self.assertEqual(document["id"], "r1")
        self.assertEqual(document["model_version"], "3")
        outputs = {o["name"]: o for o in document["outputs"]}
        self.assertEqual(outputs["probability"]["shape"], [6, 1])
        self.assertEqual(outputs["probability"]["datatype"], "FP32")
        for name in ("probability", "logit"):
            got = np.array(outputs[name]["data"]).reshape(6, 1)
            self.assertAllClose(got, self.expected[name], tol=testing.ORT)

    def test_binary_extension_and_versions_path(self):
        inputs = _v2_inputs(self.raw)
        binary = []
        for tensor in inputs:
            if tensor["datatype"] == "BYTES":
                chunk = _bytes_tensor(tensor["data"])
            else:
                dtype = "<f4" if tensor["datatype"] == "FP32" else "<i8"
                chunk = np.asarray(tensor["data"], dtype=dtype).tobytes()
            del tensor["data"]
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            binary.append(chunk)
        header = json.dumps(
            {
                "inputs": inputs,
                "outputs": [
                    {"name": "probability", "parameters": {"binary_data": True}}
                ],
            }
        ).encode()
        status, headers, answer = _post(
            self.url + "/v2/models/ctr/versions/3/infer",
            header + b"".join(binary),
            {"Inference-Header-Content-Length": str(len(header))},
        )
        self.assertEqual(status, 200, answer)
        size = int(headers["inference-header-content-length"])
        document = json.loads(answer[:size])
        self.assertEqual(
            [o["name"] for o in document["outputs"]], ["probability"]
        )
        got = np.frombuffer(answer[size:], dtype="<f4").reshape(6, 1)
        self.assertAllClose(got, self.expected["probability"], tol=testing.ORT)

    def test_metadata_health_and_ready(self):
        status, body = _get(self.url + "/v2/models/ctr")
        self.assertEqual(status, 200)
        document = json.loads(body)
        self.assertEqual(document["name"], "ctr")
        self.assertIn("3", document["versions"])
        inputs = {t["name"]: t for t in document["inputs"]}
        self.assertEqual(
            inputs["tags"],
            {"name": "tags", "datatype": "BYTES", "shape": [-1, -1]},
        )
        self.assertEqual(inputs["user"]["datatype"], "INT64")
        self.assertEqual(inputs["price"]["shape"], [-1])
        self.assertEqual(len(inputs), len(FEATURES))
        for path, code in (
            ("/v2/health/live", 200),
            ("/v2/health/ready", 200),
            ("/v2/models/ctr/ready", 200),
            ("/v2/models/ctr/versions/3/ready", 200),
            ("/v2/models/ctr/versions/9/ready", 400),
            ("/v2/models/nope/ready", 404),
        ):
            self.assertEqual(_get(self.url + path)[0], code, path)
        status, body = _get(self.url + "/v2")
        self.assertEqual(json.loads(body)["name"], "tffm")

    @parameterized.named_parameters(
        ("unknown_model", "/v2/models/nope/infer", None, 404, "Latest(nope)"),
        (
            "bad_version",
            "/v2/models/ctr/versions/x/infer",
            None,
            400,
            "non-negative",
        ),
        (
            "wrong_datatype",
            "/v2/models/ctr/infer",
            ("city", "datatype", "FP32"),
            400,
            "Input 'city' must have datatype BYTES",
        ),
        (
            "list_shape",
            "/v2/models/ctr/infer",
            ("tags", "shape", [6]),
            400,
            "Input 'tags': shape must be [batch_size, length]",
        ),
        (
            "element_count",
            "/v2/models/ctr/infer",
            ("price", "shape", [5]),
            400,
            "Input 'price': 6 elements; shape [5] needs 5",
        ),
        (
            "not_numbers",
            "/v2/models/ctr/infer",
            ("user", "data", ["a"] * 6),
            400,
            "Feature 'user' takes integers",
        ),
        (
            "wrong_name",
            "/v2/models/ctr/infer",
            ("score", "name", "other"),
            400,
            "missing: ['score'], unexpected: ['other']",
        ),
    )
    def test_bad_request(self, path, change, status, message):
        inputs = _v2_inputs(self.raw)
        if change is not None:
            name, key, value = change
            next(t for t in inputs if t["name"] == name)[key] = value
        body = json.dumps({"inputs": inputs}).encode()
        got, _, answer = _post(self.url + path, body)
        self.assertEqual(got, status, answer)
        self.assertIn(message, json.loads(answer)["error"])

    def test_errors_are_counted_by_model_and_api(self):
        def count():
            status, text = _get(self.url + "/metrics")
            self.assertEqual(status, 200)
            key = (
                'tffm_serving_requests_total{api="v2_infer",'
                'code="INVALID_ARGUMENT",model="ctr",transport="rest"}'
            )
            for line in text.decode().splitlines():
                if line.startswith(key):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before = count()
        _post(self.url + "/v2/models/ctr/infer", b'{"inputs": []}')
        self.assertEqual(count(), before + 1)

    def test_malformed_bodies(self):
        url = self.url + "/v2/models/ctr/infer"
        for body, message in (
            (b"{", "JSON Parse error"),
            (b'{"inputs": []}', "'inputs' must be a non-empty list"),
        ):
            status, _, answer = _post(url, body)
            self.assertEqual(status, 400, answer)
            self.assertIn(message, json.loads(answer)["error"])
        status, _, answer = _post(
            url, b'{"inputs": 1}', {"Inference-Header-Content-Length": "99"}
        )
        self.assertEqual(status, 400)
        self.assertIn("does not fit", json.loads(answer)["error"])
        self.assertEqual(_get(self.url + "/v2/other")[0], 404)


@pytest.mark.usefixtures("server", "trained")
class V2GrpcTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, server, trained, raw_batch):
        self.channel = grpc.insecure_channel(server["grpc"])
        self.raw = raw_batch
        self.expected = keras_outputs(trained, raw_batch)
        yield
        self.channel.close()

    def _call(self, method, request):
        response = v2_protos.MESSAGES[
            dict((m, r) for m, _, r in v2_protos.METHODS)[method]
        ]
        call = self.channel.unary_unary(
            f"/{v2_protos.SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        return call(request, timeout=30)

    def _request(self, raw_contents):
        request = v2_protos.ModelInferRequest(model_name="ctr", id="g1")
        for tensor in _v2_inputs(self.raw):
            entry = request.inputs.add(
                name=tensor["name"],
                datatype=tensor["datatype"],
                shape=tensor["shape"],
            )
            data = tensor["data"]
            if raw_contents:
                if tensor["datatype"] == "BYTES":
                    chunk = _bytes_tensor(data)
                else:
                    dtype = "<f4" if tensor["datatype"] == "FP32" else "<i8"
                    chunk = np.asarray(data, dtype=dtype).tobytes()
                request.raw_input_contents.append(chunk)
            elif tensor["datatype"] == "BYTES":
                entry.contents.bytes_contents.extend(v.encode() for v in data)
            elif tensor["datatype"] == "FP32":
                entry.contents.fp32_contents.extend(data)
            else:
                entry.contents.int64_contents.extend(data)
        return request

    def test_infer_contents_and_raw_match_keras(self):
        for raw_contents in (False, True):
            response = self._call("ModelInfer", self._request(raw_contents))
            self.assertEqual(response.id, "g1")
            self.assertEqual(response.model_version, "3")
            names = [o.name for o in response.outputs]
            got = np.frombuffer(
                response.raw_output_contents[names.index("probability")],
                dtype="<f4",
            ).reshape(6, 1)
            self.assertAllClose(
                got, self.expected["probability"], tol=testing.ORT
            )

    def test_errors_are_grpc_statuses(self):
        request = self._request(True)
        request.raw_input_contents.pop()
        with self.assertRaises(grpc.RpcError) as caught:
            self._call("ModelInfer", request)
        self.assertEqual(
            caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT
        )
        self.assertIn("one per input", caught.exception.details())
        request = self._request(False)
        request.model_name = "nope"
        with self.assertRaises(grpc.RpcError) as caught:
            self._call("ModelInfer", request)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        ready = v2_protos.MESSAGES["ServerReadyRequest"]()
        self.assertTrue(self._call("ServerReady", ready).ready)


@pytest.mark.usefixtures("server", "trained")
class TritonClientTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, server, trained, raw_batch, tritonclient_path):
        self.server = server
        self.raw = raw_batch
        self.expected = keras_outputs(trained, raw_batch)
        self.path = tritonclient_path

    def test_tritonclient_http_and_grpc(self):
        payload = {k: np.asarray(v).tolist() for k, v in self.raw.items()}
        code = textwrap.dedent(
            f"""
            import json
            import numpy as np
            import tritonclient.grpc as grpcclient
            import tritonclient.http as httpclient
            from tritonclient.utils import InferenceServerException

            raw = json.loads({json.dumps(payload)!r})
            out = {{}}
            for kind, module, url in (
                ("http", httpclient, {self.server["rest"]!r}),
                ("grpc", grpcclient, {self.server["grpc"]!r}),
            ):
                client = module.InferenceServerClient(url)
                metadata = client.get_model_metadata("ctr")
                if kind == "grpc":
                    metadata = {{
                        "versions": list(metadata.versions),
                        "inputs": [
                            {{"name": t.name, "datatype": t.datatype,
                              "shape": list(t.shape)}}
                            for t in metadata.inputs
                        ],
                    }}
                inputs = []
                for tensor in metadata["inputs"]:
                    dtype = {{"BYTES": object, "INT64": np.int64,
                              "FP32": np.float32}}[tensor["datatype"]]
                    value = np.array(raw[tensor["name"]], dtype=dtype)
                    entry = module.InferInput(
                        tensor["name"], list(value.shape), tensor["datatype"]
                    )
                    entry.set_data_from_numpy(value)
                    inputs.append(entry)
                result = client.infer("ctr", inputs, request_id="t1")
                bad = module.InferInput("city", [6], "FP32")
                bad.set_data_from_numpy(np.zeros(6, np.float32))
                try:
                    client.infer("ctr", [bad, *inputs[1:]])
                    error = None
                except InferenceServerException as caught:
                    error = caught.message()
                try:
                    client.get_model_metadata("nope")
                    missing = None
                except InferenceServerException as caught:
                    missing = caught.message()
                out[kind] = {{
                    "live": client.is_server_live(),
                    "ready": client.is_server_ready(),
                    "model_ready": client.is_model_ready("ctr"),
                    "unknown_ready": client.is_model_ready("ctr", "9"),
                    "versions": metadata["versions"],
                    "probability": result.as_numpy("probability").tolist(),
                    "logit": result.as_numpy("logit").tolist(),
                    "bad": error,
                    "missing": missing,
                }}
                if kind == "http":
                    plain = [module.InferRequestedOutput(
                        "probability", binary_data=False)]
                    for entry, tensor in zip(inputs, metadata["inputs"]):
                        value = np.array(raw[tensor["name"]], dtype=object
                            if tensor["datatype"] == "BYTES" else None)
                        if tensor["datatype"] == "FP32":
                            value = value.astype(np.float32)
                        entry.set_data_from_numpy(value, binary_data=False)
                    json_result = client.infer("ctr", inputs, outputs=plain)
                    out[kind]["json_probability"] = json_result.as_numpy(
                        "probability").tolist()
                client.close()
            print(json.dumps(out))
            """
        )
        env = dict(os.environ, PYTHONPATH=self.path)
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.path,
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        out = json.loads(done.stdout.strip().splitlines()[-1])
        for kind in ("http", "grpc"):
            got = out[kind]
            self.assertTrue(got["live"] and got["ready"] and got["model_ready"])
            self.assertFalse(got["unknown_ready"])
            self.assertEqual(got["versions"], ["3"])
            for name in ("probability", "logit"):
                self.assertAllClose(
                    np.array(got[name]), self.expected[name], tol=testing.ORT
                )
            self.assertIn("Input 'city' must have datatype BYTES", got["bad"])
            self.assertIn("nope", got["missing"])
        self.assertAllClose(
            np.array(out["http"]["json_probability"]),
            self.expected["probability"],
            tol=testing.ORT,
        )
