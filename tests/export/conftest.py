import keras
import numpy as np
import pytest

import tffm

FEATURES = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo", "lima", "oslo"]),
    tffm.Categorical("ad_id", hash_bins=1000),
    tffm.Categorical("user", vocabulary=[11, 22, 33, 44]),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.MultiCategorical("history", hash_bins=50, max_len=4),
    tffm.Numeric("price", transform="log1p", mean=1.0, std=2.0),
    tffm.Numeric("score"),
]


def to_tf(raw):
    """Raw values as tensors, unchecked (tests feed deliberately bad ones)."""
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def trained():
    """A DeepFM over every feature kind, trained briefly, and its encoder."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export needs the TensorFlow backend")
    from export.edge_cases import edge_case_batch

    keras.utils.set_random_seed(0)
    model = tffm.DeepFM(FEATURES, embedding_dim=4, hidden_units=[16, 8])
    encoder = tffm.FeatureEncoder(FEATURES)
    raw = edge_case_batch(FEATURES, 512, seed=3)
    raw["score"] = np.clip(raw["score"], -5, 5)  # keep training finite
    labels = np.random.default_rng(0).integers(0, 2, 512)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(encoder(to_tf(raw)), labels, epochs=2, verbose=0)
    return model, encoder


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from export import export_for_serving

    model, _ = trained
    out = tmp_path_factory.mktemp("export")
    result = export_for_serving(model, str(out), model_name="ctr", version=3)
    return result
