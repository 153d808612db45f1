"""Synthetic CTR data with a planted FM ground truth (no downloads needed)."""

import dataclasses
from typing import Any

import numpy as np

from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric


@dataclasses.dataclass(frozen=True)
class PlantedData:
    """Raw features, labels and the true click probabilities.

    Attributes:
        features: the feature spec that describes `raw`.
        raw: dict `{feature_name: numpy array}` of raw values (strings,
            floats, padded string lists).
        labels: `(num_rows,)` int 0/1, drawn from `probabilities`.
        probabilities: `(num_rows,)` the planted model's `P(y=1 | x)`; their
            AUC on `labels` is the Bayes-optimal AUC of this sample.
    """

    features: tuple[Feature, ...]
    raw: dict[str, np.ndarray]
    labels: np.ndarray
    probabilities: np.ndarray

    def split(self, fraction: float) -> tuple["PlantedData", "PlantedData"]:
        """Splits rows into the first `fraction` and the rest."""
        cut = int(len(self.labels) * fraction)

        def part(rows: slice) -> PlantedData:
            return PlantedData(
                self.features,
                {k: v[rows] for k, v in self.raw.items()},
                self.labels[rows],
                self.probabilities[rows],
            )

        return part(slice(0, cut)), part(slice(cut, None))

    def csv_columns(self) -> dict[str, dict[str, Any]]:
        """The `columns` of a `TrainConfig` that reads `to_csv`'s file.

        Numbers are read with `log1p`, lists with the `max_len` and
        `combiner` the labels were drawn with, hashed values into the same
        number of bins.
        """
        columns: dict[str, dict[str, Any]] = {}
        for feature in self.features:
            if isinstance(feature, Numeric):
                columns[feature.name] = {
                    "kind": "numeric",
                    "transform": "log1p",
                }
            elif isinstance(feature, MultiCategorical):
                columns[feature.name] = {
                    "kind": "list",
                    "max_len": feature.max_len,
                    "combiner": feature.combiner,
                }
            elif isinstance(feature, Categorical) and feature.hash_bins:
                columns[feature.name] = {
                    "kind": "categorical",
                    "hash_bins": feature.hash_bins,
                }
            else:
                columns[feature.name] = {"kind": "categorical"}
        return columns

    def to_csv(self, path: str) -> str:
        """Writes the rows as CSV with a `label` column; returns `path`.

        Lists are joined with `|`, missing numbers are empty cells.
        """
        names = list(self.raw)
        cells = []
        for name in names:
            values = self.raw[name]
            if values.ndim == 2:
                cells.append(["|".join(v for v in row if v) for row in values])
            elif values.dtype.kind == "f":
                cells.append(["" if np.isnan(v) else f"{v:g}" for v in values])
            else:
                cells.append([str(v) for v in values])
        with open(path, "w") as f:
            f.write(",".join(names + ["label"]) + "\n")
            for row, label in enumerate(self.labels.tolist()):
                f.write(",".join([c[row] for c in cells] + [str(label)]) + "\n")
        return path


def make_planted_ctr(
    num_rows: int,
    *,
    num_categorical: int = 8,
    vocabulary_size: int = 50,
    num_numeric: int = 2,
    seed: int = 0,
) -> PlantedData:
    """Draws CTR rows from a planted factorization machine.

    Fields: `num_categorical` vocabulary fields `c0, c1, ...` with
    Zipf-like value frequencies (the last one hashed into 1,000 buckets),
    `num_numeric` log-normal count fields `n0, ...` (10% missing), and
    one multi-valued field `tags` (0-4 values, mean pooled). The label is
    Bernoulli(sigmoid(FM(x))) with planted weights of dimension 4, so the
    achievable AUC is known: `roc_auc(labels, probabilities)`.

    Args:
        num_rows: int. Rows to draw.
        num_categorical: int. Categorical fields (>= 1).
        vocabulary_size: int. Distinct values per categorical field.
        num_numeric: int. Numeric fields.
        seed: int. Seed of every draw.

    Returns:
        A `PlantedData`.
    """
    rng = np.random.default_rng(seed)
    dim = 4
    features: list[Feature] = []
    raw: dict[str, np.ndarray] = {}
    factors = []  # per field (num_rows, dim + 1): [v * x, w * x]
    zipf = 1.0 / np.arange(1, vocabulary_size + 1) ** 1.1
    zipf /= zipf.sum()
    for j in range(num_categorical):
        tokens = np.array([f"c{j}_{k}" for k in range(vocabulary_size)])
        weights = rng.normal(0, 0.6, size=(vocabulary_size, dim + 1))
        ids = rng.choice(vocabulary_size, size=num_rows, p=zipf)
        values = tokens[ids].astype(object)
        values[rng.random(num_rows) < 0.02] = ""  # missing
        raw[f"c{j}"] = values
        factors.append(np.where((values == "")[:, None], 0.0, weights[ids]))
        if j == num_categorical - 1:
            features.append(Categorical(f"c{j}", hash_bins=2 * vocabulary_size))
        else:
            features.append(Categorical(f"c{j}", vocabulary=tuple(tokens)))
    for j in range(num_numeric):
        counts = np.floor(rng.lognormal(1.0, 1.0, size=num_rows))
        weights = rng.normal(0, 0.4, size=dim + 1)
        counts[rng.random(num_rows) < 0.1] = np.nan
        # Standardized with the sample's own moments, as the model's
        # Numeric(transform="log1p") is with the training scan's.
        logs = np.log1p(counts)
        mean, std = np.nanmean(logs), np.nanstd(logs)
        scaled = np.where(np.isnan(counts), 0.0, (logs - mean) / std)
        raw[f"n{j}"] = counts.astype("float32")
        factors.append(scaled[:, None] * weights[None])
        features.append(
            Numeric(
                f"n{j}", transform="log1p", mean=float(mean), std=float(std)
            )
        )
    tag_tokens = np.array([f"t{k}" for k in range(20)])
    tag_weights = rng.normal(0, 0.6, size=(20, dim + 1))
    lengths = rng.integers(0, 5, size=num_rows)
    # 4 distinct tags per row (a random permutation's head), first `length`
    # kept: vectorized, no per-row Python.
    chosen = np.argsort(rng.random((num_rows, 20)), axis=1)[:, :4]  # (B, 4)
    present = np.arange(4)[None, :] < lengths[:, None]  # (B, 4)
    tags = np.where(present, tag_tokens[chosen], "").astype(object)
    summed = (tag_weights[chosen] * present[:, :, None]).sum(axis=1)
    pooled = summed / np.maximum(lengths, 1)[:, None]
    raw["tags"] = tags
    factors.append(pooled)
    features.append(
        MultiCategorical(
            "tags", vocabulary=tuple(tag_tokens), max_len=4, combiner="mean"
        )
    )
    stacked = np.stack(factors, axis=1)  # (B, F, dim + 1)
    v, w = stacked[:, :, :dim], stacked[:, :, dim]
    pairwise = 0.5 * (v.sum(axis=1) ** 2 - (v**2).sum(axis=1)).sum(axis=1)
    logit = -1.0 + w.sum(axis=1) + pairwise
    probabilities = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(num_rows) < probabilities).astype("int64")
    return PlantedData(tuple(features), raw, labels, probabilities)
