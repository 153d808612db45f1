"""Score rows with the edge predictor: numpy and onnxruntime, no TensorFlow.

Reads raw rows as JSON lines (one object per row, a feature's name to its
value; a list feature's value is a list), scores them in batches with
`serving.OnnxPredictor`, and writes one CSV row per input row. Needs only
`pip install 'tffm-keras[serving]'`.

    python examples/score_onnx.py model.onnx rows.jsonl --output scores.csv
"""

import argparse
import csv
import json
import sys
from collections.abc import Iterator

import numpy as np

from serving import OnnxPredictor
from tffm.features import MultiCategorical
from tffm.features import Numeric


def batches(path: str, size: int) -> Iterator[list[dict]]:
    """The file's rows, `size` at a time."""
    batch: list[dict] = []
    with open(path) as file:
        for line in file:
            if line.strip():
                batch.append(json.loads(line))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def columns(predictor: OnnxPredictor, rows: list[dict]) -> dict[str, list]:
    """Rows to the predictor's columns; a missing value is the feature's."""
    out: dict[str, list] = {}
    for feature in predictor.features:
        if isinstance(feature, MultiCategorical):
            pad = -1 if feature.dtype == "int64" else ""
            values = [list(row.get(feature.name, []))[: feature.max_len]
                      for row in rows]  # fmt: skip
            width = max(1, *(len(v) for v in values))
            out[feature.name] = [v + [pad] * (width - len(v)) for v in values]
        elif isinstance(feature, Numeric):
            out[feature.name] = [
                float("nan") if row.get(feature.name) is None
                else float(row[feature.name])
                for row in rows
            ]  # fmt: skip
        else:
            pad = -1 if feature.dtype == "int64" else ""
            out[feature.name] = [row.get(feature.name, pad) for row in rows]
    return out


def main() -> None:
    """Runs the example from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="raw-input .onnx file")
    parser.add_argument("rows", help="JSON lines, one raw row each")
    parser.add_argument("--output", help="CSV file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=1_024)
    args = parser.parse_args()

    predictor = OnnxPredictor(args.model)
    file = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(file)
        header_written = False
        line = 0
        for rows in batches(args.rows, args.batch_size):
            scores = predictor.predict(columns(predictor, rows))
            names = list(scores)
            if not header_written:
                writer.writerow(["line", *names])
                header_written = True
            values = np.hstack([scores[name] for name in names])  # (B, outputs)
            for row in values:
                line += 1
                writer.writerow([line, *(f"{v:.6g}" for v in row)])
    finally:
        if file is not sys.stdout:
            file.close()


if __name__ == "__main__":
    main()
