"""A resume checkpoint is refused by a model with other features."""

import dataclasses

import keras
import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import testing
from tffm.train import resume

FEATURES = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo"]),
    tffm.MultiCategorical("tags", vocabulary=["x", "y", "z"], max_len=3),
    tffm.Numeric("price", mean=1.0, std=2.0),
]
ROWS = 64


def _encoded():
    rng = np.random.default_rng(0)
    x = {
        "city": rng.integers(0, 4, ROWS),
        "tags": rng.integers(0, 5, (ROWS, 3)),
        "price": rng.normal(size=ROWS).astype("float32"),
    }
    return x, rng.integers(0, 2, ROWS).astype("float32")


class ResumeFeaturesTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def _fit_on(self, features, directory, stop_at=None):
        """2 epochs; `stop_at` an epoch: killed as it begins."""

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == stop_at:
                    raise KeyboardInterrupt

        keras.utils.set_random_seed(0)
        model = tffm.FM(features, embedding_dim=2)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        x, y = _encoded()
        try:
            resume.fit_resumable(
                model,
                x,
                y=y,
                checkpoint=resume.ResumeCheckpoint(directory),
                epochs=2,
                callbacks=[Kill()],
                batch_size=16,
                verbose=0,
            )
        except KeyboardInterrupt:
            return None
        return model

    def test_same_features_resume_the_finished_fit(self):
        folder = str(self.tmp / "run")
        first = self._fit_on(FEATURES, folder)
        again = self._fit_on(FEATURES, folder)  # finished: weights restored
        for a, b in zip(first.weights, again.weights, strict=True):
            self.assertAllClose(a, b, tol=(0, 0))

    @parameterized.parameters((None,), (1,))  # finished, killed mid-run
    def test_other_combiner_or_vocabulary_is_refused(self, stop_at):
        folder = str(self.tmp / "run")
        self.assertEqual(
            self._fit_on(FEATURES, folder, stop_at) is None, bool(stop_at)
        )
        tags = FEATURES[1]
        for changed, message in (
            (
                dataclasses.replace(tags, combiner="mean"),
                "combiner 'sum' there, 'mean' here",
            ),
            (
                dataclasses.replace(tags, vocabulary=("x", "y", "w")),
                "another vocabulary",
            ),
        ):
            with self.assertRaisesRegex(ValueError, message) as raised:
                self._fit_on([FEATURES[0], changed, FEATURES[2]], folder)
            self.assertIn("Feature 'tags'", str(raised.exception))
            self.assertIn("--no-resume", str(raised.exception))

    def test_numeric_statistics_may_differ(self):
        folder = str(self.tmp / "run")
        self.assertIsNone(self._fit_on(FEATURES, folder, stop_at=1))
        price = dataclasses.replace(FEATURES[2], mean=1.0 + 1e-12)
        self.assertIsNotNone(self._fit_on([*FEATURES[:2], price], folder))
