"""`model.fit` from Python with a feature spec of your own, then ONNX.

A DeepFM on four kinds of feature (a vocabulary, a hashed id, a list and
a number), trained with plain Keras `model.fit` on raw values that
`FeatureEncoder` turns into ids, saved and reloaded as `.keras`, and
exported to a raw-input ONNX file that `serving.OnnxPredictor` (or
`examples/score_onnx.py`) scores without TensorFlow.

    python examples/fit_custom_spec.py --output fit-example
"""

import argparse
import os

import keras
import numpy as np

import tffm
from export import export_onnx
from tffm.metrics import roc_auc

FEATURES = [
    tffm.Categorical("country", vocabulary=["fr", "jp", "pe", "us"]),
    tffm.Categorical("ad_id", hash_bins=5_000),
    tffm.MultiCategorical(
        "interests", vocabulary=["sport", "news", "tech", "food"], max_len=3
    ),
    tffm.Numeric("bid", transform="log1p"),
]


def make_rows(rows: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw rows whose click rate depends on country x interest and the bid."""
    rng = np.random.default_rng(seed)
    country = rng.choice(["fr", "jp", "pe", "us", "de", ""], rows)
    interests = rng.choice(["sport", "news", "tech", "food", ""], (rows, 3))
    bid = rng.lognormal(0.0, 1.0, rows).astype("float32")
    ad_id = np.array([f"ad{i}" for i in rng.integers(0, 1_000, rows)])
    logit = (
        1.5 * ((country == "jp") & (interests == "tech").any(axis=1))
        - 1.0 * ((country == "us") & (interests == "sport").any(axis=1))
        + 0.5 * np.log1p(bid)
        - 1.0
    )
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    raw = {"country": country, "ad_id": ad_id, "interests": interests,
           "bid": bid}  # fmt: skip
    return raw, labels


def main() -> None:
    """Runs the example from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="fit-example")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(0)

    train_raw, train_labels = make_rows(args.rows, seed=0)
    test_raw, test_labels = make_rows(args.rows // 4, seed=1)
    encoder = tffm.FeatureEncoder(FEATURES)  # raw values -> ids

    model = tffm.DeepFM(FEATURES, embedding_dim=8, hidden_units=[64, 32])
    model.compile(
        optimizer=tffm.optimizers.Adam(learning_rate=3e-3),
        loss="binary_crossentropy",
    )
    model.fit(
        encoder(train_raw),
        train_labels,
        batch_size=256,
        epochs=args.epochs,
        validation_split=0.1,
        verbose=0,
    )
    probabilities = np.asarray(
        model.predict(encoder(test_raw), batch_size=4_096, verbose=0)
    ).reshape(-1)
    print(f"test AUC: {roc_auc(test_labels, probabilities):.4f}")

    path = os.path.join(args.output, "model.keras")
    model.save(path)
    reloaded = tffm.load_model(path)
    again = np.asarray(
        reloaded.predict(encoder(test_raw), batch_size=4_096, verbose=0)
    ).reshape(-1)
    difference = np.abs(again - probabilities).max()
    print(f"reloaded .keras: max difference {difference:.2e}")

    onnx_path = export_onnx(model, os.path.join(args.output, "model.onnx"))
    print(f"wrote {onnx_path}")


if __name__ == "__main__":
    main()
