"""Batch scoring for `tffm predict` (application code, used by the CLI).

Like `tffm.cli`, it may import `export` and `serving` (lazily), since it
loads any of the three artifacts.
"""

import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np


def write_predictions(
    config: Any,
    model: Any,
    data: list[str],
    output: str,
    *,
    artifact: str | None = None,
) -> int:
    """Scores raw data with `model` (or an exported artifact of it).

    Args:
        config: the `TrainConfig` that says how to read `data`.
        model: the trained Keras model.
        data: files or globs.
        output: `.csv` or `.parquet` file to write.
        artifact: SavedModel directory or `.onnx` file to score with
            instead of the Keras model.

    Returns:
        The number of rows written.
    """
    from tffm.training import open_source

    if not output.endswith((".csv", ".parquet")):
        raise ValueError(
            f"`--output` must end in .csv or .parquet. Received: {output!r}"
        )
    score = _scorer(model, artifact)
    columns: dict[str, list[np.ndarray]] = {}
    for features, labels in open_source(config, data).dataset:
        raw = {
            k: (
                v.numpy().astype(object)
                if v.dtype.name == "string"
                else v.numpy()
            )
            for k, v in features.items()
        }
        for name, values in score(raw).items():
            columns.setdefault(name, []).append(np.asarray(values)[:, 0])
        columns.setdefault("label", []).append(labels.numpy())
    table = {k: np.concatenate(v) for k, v in columns.items()}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if output.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table), output)
    else:
        names = list(table)
        with open(output, "w") as f:
            f.write(",".join(names) + "\n")
            for row in zip(*(table[n] for n in names), strict=True):
                f.write(",".join(f"{v:.9g}" for v in row) + "\n")
    return len(table["label"])


def _scorer(
    model: Any, artifact: str | None
) -> Callable[[Mapping[str, np.ndarray]], dict[str, Any]]:
    if artifact is None:
        import tensorflow as tf

        from tffm.encoder import FeatureEncoder

        composed = FeatureEncoder(model.features).compose(
            model, with_logit=True
        )

        def keras_score(raw: Mapping[str, np.ndarray]) -> dict[str, Any]:
            feeds = {
                k: tf.constant(v.tolist() if v.dtype == object else v)
                for k, v in raw.items()
            }
            return {k: v.numpy() for k, v in composed(feeds).items()}

        return keras_score
    if artifact.endswith(".onnx"):
        from serving.onnx_predictor import OnnxPredictor

        return OnnxPredictor(artifact).predict
    from serving.saved_model_predictor import SavedModelPredictor

    return SavedModelPredictor(artifact).predict
