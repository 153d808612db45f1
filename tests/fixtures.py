"""Features, a trained model and a serving-only venv shared by the export
and serving tests."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np

import tffm
from tffm.encoder import to_tensors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the `[serving]` extra must not install.
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch", "tf2onnx")

FEATURES = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo", "lima", "oslo"]),
    tffm.Categorical("ad_id", hash_bins=1000),
    tffm.Categorical("user", vocabulary=[11, 22, 33, 44]),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.MultiCategorical("history", hash_bins=50, max_len=4),
    tffm.Numeric("price", transform="log1p", mean=1.0, std=2.0),
    tffm.Numeric("score"),
]


def train_deepfm() -> keras.Model:
    """A DeepFM over every feature kind of `FEATURES`, trained briefly.

    TensorFlow backend (the encoder's preprocessing layers take tensors).
    """
    from export.edge_cases import edge_case_batch

    keras.utils.set_random_seed(0)
    model = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[16, 8])
    encoder = tffm.FeatureEncoder(FEATURES)
    raw = edge_case_batch(FEATURES, 512, seed=3)
    raw["score"] = np.clip(raw["score"], -5, 5)  # keep training finite
    labels = np.random.default_rng(0).integers(0, 2, 512)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(encoder(to_tensors(FEATURES, raw)), labels, epochs=2, verbose=0)
    return model


def serving_venv(folder: pathlib.Path) -> pathlib.Path:
    """A fresh venv in `folder` with this checkout's `[serving]` extra only.

    Fails when the install fails or brings in one of `FRAMEWORKS`;
    returns the venv's `bin` folder.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", str(folder)], check=True, timeout=120
    )
    python = str(folder / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{ROOT}[serving]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    for heavy in FRAMEWORKS:
        assert heavy not in installed, heavy
    return folder / "bin"
