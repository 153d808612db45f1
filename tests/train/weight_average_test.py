"""`ema`: the weights' moving average is what is validated, kept and saved.

The expected averages are computed here in float64 from the raw weights
recorded after every step, by the definition (Polyak averaging: the first
step's weights, then `m * average + (1 - m) * weights` each step).
"""

import keras
import numpy as np
import pytest

from tffm import testing
from tffm.train import resume
from tffm.train.callbacks import AveragedWeights
from tffm.train.config import TrainConfig

MOMENTUM = 0.6
ROWS, BATCH = 48, 8  # 6 steps an epoch


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3).astype("float32")
    x_val = rng.normal(size=(16, 3)).astype("float32")
    y_val = (x_val @ np.array([1.0, -2.0, 0.5]) + 0.3).astype("float32")
    return x, y, x_val, y_val


def _model(ema):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.SGD(
            0.05, use_ema=ema, ema_momentum=MOMENTUM
        ),
        loss="mean_squared_error",
    )
    return model


class _Record(keras.callbacks.Callback):
    """The model's weights after each step and at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.steps, self.epoch_ends = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(_flat(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(_flat(self.model))


def _flat(model):
    return np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(w)) for w in model.weights]
    ).astype(np.float64)


def _averages(steps):
    averages, average = [], None
    for weights in steps:
        average = (
            weights
            if average is None
            else MOMENTUM * average + (1 - MOMENTUM) * weights
        )
        averages.append(average)
    return averages


def _mse(flat, x, y):
    kernel, bias = flat[:3], flat[3]
    return float(np.mean((x.astype(np.float64) @ kernel + bias - y) ** 2))


class AveragedWeightsTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def _fit(self, ema, epochs=3):
        x, y, x_val, y_val = _data()
        model = _model(ema)
        steps, seen, after = _Record(), _Record(), _Record()
        callbacks = [steps]
        if ema:
            average = AveragedWeights()
            callbacks += [average, seen, average.swap_back, after]
        history = model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=epochs,
            validation_data=(x_val, y_val),
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        return model, history.history, steps, seen, after

    def test_validation_and_epoch_end_see_the_average(self):
        x, y, x_val, y_val = _data()
        model, history, steps, seen, _ = self._fit(True)
        averages = _averages(steps.steps)
        per_epoch = ROWS // BATCH
        for epoch in range(3):
            expected = averages[(epoch + 1) * per_epoch - 1]
            self.assertAllClose(
                seen.epoch_ends[epoch], expected, tol=(1e-6, 1e-6)
            )
            self.assertAllClose(
                history["val_loss"][epoch],
                _mse(expected, x_val, y_val),
                tol=(1e-6, 1e-5),
            )
        # After `fit`, the model holds the last average.
        self.assertAllClose(_flat(model), averages[-1], tol=(1e-6, 1e-6))

    def test_training_goes_on_from_the_raw_weights(self):
        _, _, plain, _, _ = self._fit(False)
        _, _, steps, _, after = self._fit(True)
        # The average never steers training: the raw trajectory is the
        # same step for step, and callbacks after `swap_back` see it.
        self.assertAllClose(np.array(steps.steps), np.array(plain.steps))
        per_epoch = ROWS // BATCH
        for epoch in range(3):
            self.assertAllClose(
                after.epoch_ends[epoch],
                steps.steps[(epoch + 1) * per_epoch - 1],
            )

    def test_early_stopping_keeps_the_best_epochs_average(self):
        x, y, x_val, y_val = _data()
        # Patience 0 on a rising validation loss: stops after epoch 2 and
        # restores epoch 1's weights, which must be epoch 1's average.
        stop = keras.callbacks.EarlyStopping(
            "val_loss", patience=0, restore_best_weights=True
        )

        class Worse(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs["val_loss"] = float(epoch)  # epoch 0 is best

        model = _model(True)
        average = AveragedWeights()
        record = _Record()
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=5,
            validation_data=(x_val, y_val),
            shuffle=False,
            verbose=0,
            callbacks=[record, average, Worse(), stop, average.swap_back],
        )
        averages = _averages(record.steps)
        self.assertEqual(len(record.steps), 2 * (ROWS // BATCH))  # stopped
        self.assertAllClose(_flat(model), averages[ROWS // BATCH - 1])

    def test_resume_after_an_epoch_matches_an_uninterrupted_fit(self):
        x, y, x_val, y_val = _data()

        def run(directory, fail_at=None):
            model = _model(True)
            average = AveragedWeights()

            class Fail(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    if epoch == fail_at:
                        raise RuntimeError("killed")

            callbacks = [average, average.swap_back, Fail()]
            checkpoint = resume.ResumeCheckpoint(directory)
            try:
                resume.fit_resumable(
                    model,
                    keras_dataset(x, y),
                    checkpoint=checkpoint,
                    epochs=3,
                    callbacks=callbacks,
                    validation_data=(x_val, y_val),
                    verbose=0,
                )
            except RuntimeError:
                return None
            return _flat(model)

        whole = run(str(self.tmp / "whole"))
        folder = str(self.tmp / "killed")
        self.assertIsNone(run(folder, fail_at=2))
        resumed = run(folder)
        self.assertAllClose(resumed, whole, tol=(1e-6, 1e-6))

    def test_config_checks(self):
        self.assertEqual(
            TrainConfig(data=["x"], columns={"a": {"kind": "numeric"}}).ema, 0.0
        )
        with self.assertRaisesRegex(ValueError, "`ema` must be < 1"):
            TrainConfig(data=["x"], columns={"a": {"kind": "numeric"}}, ema=1.0)
        # The binary DeepFM averages by default, except where it cannot.
        deepfm = dict(format="criteo", model="deepfm")
        large = TrainConfig(**deepfm).for_data(
            training_rows=10**6, table_rows=10
        )
        self.assertEqual(large.ema, 0.995)
        self.assertEqual(
            TrainConfig(**deepfm, distribution="parameter-server").ema, 0.0
        )
        with self.assertRaisesRegex(ValueError, "parameter-server"):
            TrainConfig(
                data=["x"],
                columns={"a": {"kind": "numeric"}},
                ema=0.9,
                distribution="parameter-server",
            )


def keras_dataset(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
