import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest

import tffm
from tffm.encoder import to_tensors

FEATURES = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo", "lima", "oslo"]),
    tffm.Categorical("ad_id", hash_bins=1000),
    tffm.Categorical("user", vocabulary=[11, 22, 33, 44]),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.MultiCategorical("history", hash_bins=50, max_len=4),
    tffm.Numeric("price", transform="log1p", mean=1.0, std=2.0),
    tffm.Numeric("score"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
MAX_BATCH_SIZE = 256


def keras_outputs(model, raw):
    """The reference: the Keras model composed with its encoder."""
    composed = tffm.FeatureEncoder(model.features).compose(
        model, with_logit=True
    )
    out = composed(to_tensors(model.features, raw))
    return {k: np.asarray(v) for k, v in out.items()}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def trained():
    """A DeepFM over every feature kind, trained briefly."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("serving tests export with the TensorFlow backend")
    from export.edge_cases import edge_case_batch

    keras.utils.set_random_seed(0)
    model = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[16, 8])
    encoder = tffm.FeatureEncoder(FEATURES)
    raw = edge_case_batch(FEATURES, 512, seed=3)
    raw["score"] = np.clip(raw["score"], -5, 5)
    labels = np.random.default_rng(0).integers(0, 2, 512)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(encoder(to_tensors(FEATURES, raw)), labels, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="session")
def onnx_file(trained, tmp_path_factory):
    from export import export_onnx

    path = str(tmp_path_factory.mktemp("onnx") / "ctr-3.onnx")
    return export_onnx(trained, path, version=3)


@pytest.fixture(scope="module")
def server(onnx_file, tmp_path_factory):
    """`python -m serving` on a base path, batching on, ephemeral ports."""
    base = tmp_path_factory.mktemp("models")
    os.makedirs(base / "ctr" / "3")
    shutil.copy(onnx_file, base / "ctr" / "3" / "model.onnx")
    params = base / "batching.config"
    params.write_text(
        f"max_batch_size {{ value: {MAX_BATCH_SIZE} }}\n"
        "batch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
    )
    config = base / "models.config"
    config.write_text(
        "model_config_list {\n  config {\n    name: 'ctr'\n"
        "    base_path: 'ctr'\n    model_platform: 'tensorflow'\n"
        "    model_version_policy { latest { num_versions: 2 } }\n"
        "  }\n}\n"
    )
    info = start_server(
        base,
        [
            f"--model_config_file={config}",
            "--enable_batching",
            f"--batching_parameters_file={params}",
            "--file_system_poll_wait_seconds=0.2",
        ],
    )
    yield info
    process = info["process"]
    process.send_signal(signal.SIGTERM)
    code = process.wait(30)
    info["log_file"].close()
    assert code == 0, info["log"].read_text()[-3000:]


def start_server(base, args):
    """`python -m serving ARGS` on 127.0.0.1, ephemeral ports, once ready.

    Returns:
        dict: `url`, `rest` and `grpc` addresses, `base`, `process`, `log`
        (its path) and `log_file` (close it after the process ends).
    """
    grpc_port, rest_port = free_port(), free_port()
    log_path = base / f"server-{rest_port}.log"
    log = open(log_path, "w")  # noqa: SIM115
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            *args,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--host=127.0.0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            raise RuntimeError(log_path.read_text()[-3000:])
        time.sleep(0.1)
    return {
        "url": url,
        "rest": f"127.0.0.1:{rest_port}",
        "grpc": f"127.0.0.1:{grpc_port}",
        "base": base,
        "process": process,
        "log": log_path,
        "log_file": log,
    }
