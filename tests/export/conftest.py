import keras
import pytest

import tffm

from ..fixtures import FEATURES
from ..fixtures import train_deepfm

__all__ = ["FEATURES"]  # imported by the export tests


@pytest.fixture(scope="module")
def trained():
    """A DeepFM over every feature kind, trained briefly, and its encoder."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export needs the TensorFlow backend")
    return train_deepfm(), tffm.FeatureEncoder(FEATURES)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from export import export_for_serving

    model, _ = trained
    out = tmp_path_factory.mktemp("export")
    result = export_for_serving(model, str(out), model_name="ctr", version=3)
    return result
