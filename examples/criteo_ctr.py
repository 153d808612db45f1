"""Criteo-style CTR: from TSV files to a model served by `tffm serve`.

Trains with `tffm.train` (what `tffm train` runs) on Criteo's TSV layout
(label, I1..I13, C1..C26), scores the test file, exports a verified
SavedModel and ONNX file, starts `tffm serve` on the export, and asks it
for predictions over TF Serving's REST API with `serving.Client`.

    python examples/criteo_ctr.py --data ../shared/data/criteo_kaggle_format_8k

`--data` is a folder with `train.csv`, `dev.csv` and `test.csv` in
Criteo's TSV layout (the names of the stored 8k-row sample).
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

from export import export_for_serving
from serving import Client
from serving import OnnxPredictor
from tffm import constants
from tffm.train import TrainConfig
from tffm.train import train
from tffm.train.evaluation import evaluate_files


def raw_rows(path: str, rows: int) -> dict[str, list]:
    """The first `rows` rows of a Criteo TSV file as raw feature columns."""
    columns: dict[str, list] = {
        name: []
        for name in constants.CRITEO_NUMERIC + constants.CRITEO_CATEGORICAL
    }
    with open(path) as file:
        for _, line in zip(range(rows), file, strict=False):
            fields = line.rstrip("\n").split("\t")[1:]  # drop the label
            for name, value in zip(
                constants.CRITEO_NUMERIC, fields[:13], strict=True
            ):
                columns[name].append(float(value) if value else float("nan"))
            for name, value in zip(
                constants.CRITEO_CATEGORICAL, fields[13:], strict=True
            ):
                columns[name].append(value)
    return columns


def serve(export_dir: str, model_name: str) -> tuple[subprocess.Popen, str]:
    """Starts `tffm serve` on the export; returns it and its REST address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        rest_port = sock.getsockname()[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        grpc_port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tffm.cli", "serve",
         f"--model_base_path={export_dir}/saved_model/{model_name}",
         f"--model_name={model_name}", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", "--host=127.0.0.1", "--no_access_log"]
    )  # fmt: skip
    address = f"127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/readyz", timeout=1):
                return server, address
        except OSError as error:
            if server.poll() is not None:
                raise RuntimeError("tffm serve exited early") from error
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("tffm serve was not ready within 60 s")


def main() -> None:
    """Runs the example from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", default="criteo-example")
    parser.add_argument(
        "--epochs", type=int, help="default: tffm's (40, early stopping)"
    )
    args = parser.parse_args()
    files = {
        part: os.path.join(args.data, f"{part}.csv")
        for part in ("train", "dev", "test")
    }

    # 1. Train: the binary FM at its defaults, early stopping on dev.csv.
    options = {"epochs": args.epochs} if args.epochs else {}
    config = TrainConfig(
        data=[files["train"]],
        validation_data=[files["dev"]],
        format="criteo",
        **options,
    )
    result = train(config, os.path.join(args.output, "model"), verbose=0)
    metrics = evaluate_files(result.model, config.layout, [files["test"]])
    print(f"test AUC {metrics['auc']:.4f}, logloss {metrics['logloss']:.4f}")

    # 2. Export: SavedModel + ONNX, published only if both match Keras.
    export_dir = os.path.join(args.output, "exported")
    export_for_serving(result.model, export_dir, model_name="ctr")

    # 3. Serve the export and ask the server for three test rows.
    rows = raw_rows(files["test"], 3)
    server, address = serve(export_dir, "ctr")
    try:
        served = Client(address, "ctr").predict(rows)
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = OnnxPredictor(
        os.path.join(export_dir, "onnx", "ctr-1.onnx")
    ).predict(rows)
    served_p = np.asarray(served["probability"]).reshape(-1)
    print("served probabilities:", [round(float(p), 4) for p in served_p])
    print(
        "largest difference from the local ONNX predictor: "
        f"{np.abs(served_p - local['probability'].reshape(-1)).max():.1e}"
    )


if __name__ == "__main__":
    main()
