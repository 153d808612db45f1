import os
import tempfile

import keras
import numpy as np

from tffm import testing
from tffm.layers import LogitCalibration


def calibrated_model(scale, shift):
    """`Input -> Dense -> LogitCalibration` with the calibration set."""
    inputs = keras.Input((3,))
    logit = keras.layers.Dense(1, name="logit")(inputs)
    calibration = LogitCalibration(name="calibration")
    model = keras.Model(inputs, calibration(logit))
    calibration.scale.assign(scale)
    calibration.shift.assign(shift)
    return model, calibration


class LogitCalibrationTest(testing.TestCase):
    def test_layer_basics(self):
        x = self.rng.normal(size=(5, 1)).astype("float32")
        layer = self.run_layer_test(
            LogitCalibration, {}, x, (5, 1), expect_trainable_weights=0
        )
        self.assertLen(layer.non_trainable_weights, 2)

    def test_identity_until_fitted(self):
        x = self.rng.normal(size=(4, 1)).astype("float32")
        self.assertAllEqual(LogitCalibration()(x), x)

    def test_hand_computed_values(self):
        layer = LogitCalibration()
        x = np.array([[1.0], [-2.0], [0.0]], "float32")
        layer.build(x.shape)
        layer.scale.assign(2.0)
        layer.shift.assign(-0.5)
        # 2 * z - 0.5
        self.assertAllClose(layer(x), [[1.5], [-4.5], [-0.5]])

    def test_training_leaves_the_calibration_alone(self):
        model, calibration = calibrated_model(1.5, 0.25)
        x = self.rng.normal(size=(32, 3)).astype("float32")
        y = self.rng.normal(size=(32, 1)).astype("float32")
        before = testing.to_numpy(model.get_layer("logit").kernel).copy()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, epochs=2, verbose=0)
        self.assertFalse(
            np.array_equal(
                testing.to_numpy(model.get_layer("logit").kernel), before
            )
        )
        self.assertAllEqual(calibration.scale, 1.5)
        self.assertAllEqual(calibration.shift, 0.25)

    def test_fitted_values_survive_keras_round_trip(self):
        model, _ = calibrated_model(0.75, -1.0)
        x = self.rng.normal(size=(6, 3)).astype("float32")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "calibrated.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        layer = loaded.get_layer("calibration")
        self.assertIsInstance(layer, LogitCalibration)
        self.assertAllEqual(layer.scale, 0.75)
        self.assertAllEqual(layer.shift, -1.0)
        self.assertAllClose(
            loaded.predict_on_batch(x), model.predict_on_batch(x)
        )
