"""Shared pieces of the distribution tests: data, configs, processes."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
)
SHARED = os.path.join(ROOT, "..", "shared", "data")

CONFIG = {
    "format": "csv",
    "label": "label",
    "columns": {
        "c0": {"kind": "categorical"},
        "c1": {"kind": "categorical"},
        "c2": {"kind": "categorical", "hash_bins": 64},
        "n0": {"kind": "numeric", "transform": "log1p"},
        "n1": {"kind": "numeric"},
        "tags": {"kind": "list", "max_len": 4},
    },
    "model": "deepfm",
    "hidden_units": [8],
    # Deterministic per row, as these tests compare replicas' weights with
    # one device's (dropout masks and batch statistics depend on how a
    # batch is split; the task / model defaults have both).
    "dropout": 0.0,
    "batch_norm": False,
    "embedding_dim": 4,
    "epochs": 2,
    "batch_size": 64,
    "learning_rate": 0.01,
    "shuffle_buffer": 1000,
}


def write_planted_csv(path, rows, seed):
    """A small CTR CSV drawn from a planted FM (`tffm.synthetic`)."""
    import tffm

    data = tffm.synthetic.make_planted_ctr(
        rows, num_categorical=3, vocabulary_size=10, seed=seed
    )
    data.to_csv(path)
    return data


def write_config(path, **overrides):
    config = dict(CONFIG, **overrides)
    with open(path, "w") as f:
        json.dump(config, f)
    return str(path)


def env(**extra):
    """The environment of a child process: this checkout importable."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, out.get("PYTHONPATH")) if p
    )
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out.update(extra)
    return out


def run_python(code, *args, timeout, **extra_env):
    """Runs `code` with `args` in a fresh Python; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra_env),
        cwd=ROOT,
    )


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def model_weights(path):
    """The weights of a saved `.keras` model, in order.

    (Paths differ between two loads in one process: Keras numbers layers.)
    """
    from tffm.models import load_model
    from tffm.testing import to_numpy

    model = load_model(path, compile=False)
    return [to_numpy(w) for w in model.weights]
