"""`model.fit` with the rows on the device (JAX) against Keras' own `fit`.

The reference of every comparison is the same model trained by Keras'
`fit` (`model.device_fit = False`) on the same rows in the same order:
the device path must end with its weights and history.
"""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tffm
from tffm import testing
from tffm.train import resume

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
JAX = keras.backend.backend() == "jax"
ROWS, BATCH = 300, 64  # 4 full batches and a short one
# A DeepFM step on the device and Keras' step are the same `train_step`
# program; XLA may fuse the `fori_loop` body otherwise (measured gap 0.0
# on CPU, float32 rounding allowed).
TOL = testing.FP32


def make_model(dtype=None):
    keras.utils.set_random_seed(0)
    features = [tffm.Categorical(f"c{i}", hash_bins=40) for i in range(3)]
    features += [
        tffm.MultiCategorical("tags", hash_bins=20, max_len=2),
        tffm.Numeric("n"),
    ]
    model = tffm.DeepFM(
        features, embedding_dim=4, hidden_units=[8], dtype=dtype
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["auc"])
    return model


def make_rows(rows=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    x = {f"c{i}": rng.integers(0, 41, rows).astype("int32") for i in range(3)}
    x["tags"] = rng.integers(0, 21, (rows, 2)).astype("int32")
    x["n"] = rng.normal(size=rows).astype("float32")
    logit = (x["c0"] % 3 - 1.0) + x["n"]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float32")
    return x, y


def keras_fit(*args, **kwargs):
    model = make_model()
    model.device_fit = False
    history = model.fit(*args, verbose=0, **kwargs)
    return model, history.history


def assert_same_weights(test, actual, expected):
    for a, e, v in zip(
        actual.get_weights(),
        expected.get_weights(),
        actual.weights,
        strict=True,
    ):
        test.assertAllClose(a, e, TOL, msg=v.path)


class DeviceRowsTest(testing.TestCase):
    """Packing into tables and back is exact (numpy reference)."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_unpack_gives_back_every_leaf(self):
        pytest.importorskip("jax")
        from tffm.train.device_fit import DeviceRows

        rng = np.random.default_rng(0)
        x = {
            "ids": rng.integers(0, 9, 7).astype("int32"),
            "list": rng.integers(0, 9, (7, 3)).astype("int32"),
            "value": rng.normal(size=7).astype("float32"),
            # 8-byte dtypes: held as JAX holds them (x64 off: 4 bytes).
            "wide": rng.normal(size=(7, 2)),
            "big": rng.integers(0, 9, 7),  # int64
        }
        y = rng.random(7).astype("float32")
        rows = DeviceRows.from_arrays(x, y)
        self.assertLen(rows.tables, 1)
        self.assertEqual(rows.tables[0].shape, (7, 1 + 3 + 1 + 2 + 1 + 1))
        index = np.array([6, 0, 3])
        got_x, got_y, weight = rows.unpack([t[index] for t in rows.tables])
        self.assertIsNone(weight)
        held = {"wide": np.float32, "big": np.int32}
        for name, array in x.items():
            expected = array.astype(held.get(name, array.dtype))
            self.assertEqual(got_x[name].dtype, expected.dtype, name)
            self.assertAllEqual(got_x[name], expected[index])
        self.assertAllEqual(got_y, y[index])

    def test_encoded_rows_unpack_as_the_reader_splits(self):
        pytest.importorskip("jax")
        from tffm.data import EncodedData
        from tffm.data.encode import write_encoded
        from tffm.train.device_fit import DeviceRows

        x, y = make_rows(50)
        features = make_model().features
        path = os.path.join(str(self.tmp), "enc")
        write_encoded([(x, y)], path, features, rows_per_shard=20)
        data = EncodedData(path)
        rows = DeviceRows.from_encoded(data)
        got_x, got_y, _ = rows.unpack([np.asarray(t) for t in rows.tables])
        want_x, want_y = data.split(data.read_rows().T)
        self.assertEqual(sorted(got_x), sorted(want_x))
        for name in want_x:
            self.assertAllEqual(got_x[name], want_x[name])
        self.assertAllEqual(got_y, want_y)


class OtherBackendsTest(testing.TestCase):
    @pytest.mark.skipif(JAX, reason="on JAX the device path runs")
    def test_keras_fit_runs(self):
        x, y = make_rows(128)
        model = make_model()
        history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        self.assertLen(history.history["loss"], 1)
        self.assertNotIn("_tffm_device_calls", model.__dict__)


@pytest.mark.skipif(not JAX, reason="the device path is JAX's")
class DeviceFitTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_in_order_matches_keras_fit(self):
        """Weights, history and validation, with sample weights."""
        x, y = make_rows()
        weight = np.linspace(0.5, 1.5, ROWS).astype("float32")
        valid = make_rows(128, seed=1)
        options = dict(
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            sample_weight=weight,
            validation_data=valid,
        )
        model = make_model()
        history = model.fit(x, y, verbose=0, **options).history
        self.assertIn("_tffm_device_calls", model.__dict__)  # device path
        reference, expected = keras_fit(x, y, **options)
        assert_same_weights(self, model, reference)
        self.assertEqual(sorted(history), sorted(expected))
        for key in expected:
            self.assertAllClose(history[key], expected[key], TOL, msg=key)

    def test_shuffles_each_epoch_in_the_seeds_order(self):
        """Epoch e trains on `DeviceOrder(seed).permutation(e)`'s rows."""
        from tffm.train.device_fit import DeviceOrder

        x, y = make_rows()
        order = DeviceOrder(5)
        perms = [np.asarray(order.permutation(e, ROWS)) for e in range(2)]
        for perm in perms:  # a permutation of the rows
            self.assertAllEqual(np.sort(perm), np.arange(ROWS))
        self.assertFalse(np.array_equal(perms[0], perms[1]))
        self.assertAllEqual(DeviceOrder(5).permutation(1, ROWS), perms[1])
        self.assertFalse(
            np.array_equal(DeviceOrder(6).permutation(1, ROWS), perms[1])
        )
        weights = {0: 1.0, 1: 2.5}
        model = make_model()
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            class_weight=weights,
            order=order,
            verbose=0,
        )
        reference = make_model()
        reference.device_fit = False
        for epoch, perm in enumerate(perms):
            reference.fit(
                {k: v[perm] for k, v in x.items()},
                y[perm],
                batch_size=BATCH,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                class_weight=weights,
                verbose=0,
            )
        assert_same_weights(self, model, reference)

    def test_callbacks_see_every_batch_and_early_stopping_stops(self):
        x, y = make_rows()
        events = []

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                events.append(("epoch", epoch))

            def on_train_batch_end(self, batch, logs=None):
                events.append(("batch", batch))

            def on_test_begin(self, logs=None):
                events.append(("test",))

            def on_epoch_end(self, epoch, logs=None):
                events.append(("end", epoch, "val_loss" in logs))

            def on_train_end(self, logs=None):
                events.append(("train_end",))

        # No epoch beats a baseline of loss 0: patience 2 stops after 2.
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", baseline=0.0, patience=2
        )
        model = make_model()
        history = model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=10,
            validation_split=0.2,
            callbacks=[Recorder(), stop],
            verbose=0,
        )
        # 240 training rows (Keras' split keeps the first 80%): 4 batches.
        epoch = [("batch", b) for b in range(4)] + [("test",)]
        self.assertEqual(
            events,
            [("epoch", 0), *epoch, ("end", 0, True)]
            + [("epoch", 1), *epoch, ("end", 1, True), ("train_end",)],
        )
        self.assertLen(history.history["val_loss"], 2)
        self.assertEqual(stop.stopped_epoch, 1)

    def test_steps_per_call_follow_the_callbacks(self):
        from tffm.train.device_fit import steps_per_call

        class EveryBatch(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pass

        model = make_model()
        epoch_only = [
            keras.callbacks.History(),
            keras.callbacks.EarlyStopping(),
            keras.callbacks.ModelCheckpoint(
                os.path.join(str(self.tmp), "m.keras")
            ),
        ]
        self.assertEqual(steps_per_call(model, epoch_only, "train", 9), 9)
        self.assertEqual(
            steps_per_call(model, [*epoch_only, EveryBatch()], "train", 9), 1
        )
        self.assertEqual(steps_per_call(model, [EveryBatch()], "test", 9), 9)
        checkpoint = resume.ResumeCheckpoint("unused", every=4)
        self.assertEqual(steps_per_call(model, [checkpoint], "train", 9), 4)
        model.compile(optimizer="adam", loss="mse", steps_per_execution=3)
        self.assertEqual(steps_per_call(model, epoch_only, "train", 9), 3)

    def test_falls_back_to_keras_where_it_cannot_run(self):
        from tffm.train.device_fit import takes_device_path

        x, y = make_rows(64)
        model = make_model()
        self.assertIsNone(takes_device_path(model, x, y, None, shuffle=True))
        self.assertIn(
            "not arrays",
            takes_device_path(model, iter([(x, y)]), None, None, shuffle=True),
        )
        self.assertIn(
            "steps_per_epoch",
            takes_device_path(
                model, x, y, None, shuffle=True, steps_per_epoch=2
            ),
        )
        self.assertIn(
            "shuffle", takes_device_path(model, x, y, None, shuffle="batch")
        )

    def test_mixed_bfloat16_keeps_loss_and_optimizer_in_float32(self):
        x, y = make_rows()
        model = make_model(dtype="mixed_bfloat16")
        history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
        self.assertIn("_tffm_device_calls", model.__dict__)
        self.assertEqual(model.get_layer("dnn").compute_dtype, "bfloat16")
        for v in [*model.trainable_variables, *model.optimizer.variables]:
            if v.dtype.startswith("float"):
                self.assertEqual(v.dtype, "float32", v.path)
        loss = history.history["loss"]
        self.assertTrue(np.isfinite(loss).all())
        self.assertLess(loss[1], loss[0])

    @pytest.mark.slow
    def test_resumes_after_sigkill_with_the_same_weights(self):
        """Killed mid-epoch, rerun: the weights of an uninterrupted fit."""
        folder = str(self.tmp)
        script = os.path.join(folder, "fit.py")
        with open(script, "w") as f:
            f.write(_RESUMABLE_FIT.format(root=ROOT, folder=folder))
        env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
        killed = subprocess.run(
            [sys.executable, script, "kill"], env=env, capture_output=True
        )
        self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stderr)
        meta = resume.ResumeCheckpoint(os.path.join(folder, "backup")).state()
        self.assertEqual((meta["epoch"], meta["step"]), (1, 2))
        again = subprocess.run(
            [sys.executable, script], env=env, capture_output=True
        )
        self.assertEqual(again.returncode, 0, again.stderr[-3000:])
        with np.load(os.path.join(folder, "weights.npz")) as saved:
            resumed = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
            loss = saved["loss"]
        model, history = _fit_resumable(os.path.join(folder, "whole"))
        self.assertAllClose(loss, history["loss"], TOL)
        for got, want, v in zip(
            resumed, model.get_weights(), model.weights, strict=True
        ):
            self.assertAllClose(got, want, TOL, msg=v.path)


class _Kill(keras.callbacks.Callback):
    """SIGKILLs the process at epoch 1 after its step 4 when `armed`."""

    batch_period = 2  # the device fit calls it every 2 steps

    def __init__(self, armed):
        super().__init__()
        self.armed = armed

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.armed and self.epoch == 1 and batch == 3:
            os.kill(os.getpid(), signal.SIGKILL)


def _fit_resumable(backup, kill=False):
    from tffm.train.device_fit import DeviceOrder

    x, y = make_rows()
    model = make_model()
    checkpoint = resume.ResumeCheckpoint(backup, every=2, order=DeviceOrder(7))
    history = resume.fit_resumable(
        model,
        x,
        y=y,
        batch_size=BATCH,
        order=checkpoint.order,
        checkpoint=checkpoint,
        epochs=3,
        callbacks=[_Kill(kill)],
        verbose=0,
    )
    return model, history


# Killed (argument `kill`) at epoch 1 after its step 4, before the
# checkpoint of that step (the killer goes first): the last checkpoint is
# epoch 1, step 2. Rerun, it resumes there and saves the final weights.
_RESUMABLE_FIT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from tests.train.device_fit_test import _fit_resumable

    model, history = _fit_resumable(
        os.path.join({folder!r}, "backup"), kill=sys.argv[1:] == ["kill"]
    )
    np.savez(
        os.path.join({folder!r}, "weights.npz"),
        loss=np.asarray(history["loss"]),
        **{{f"w{{i}}": w for i, w in enumerate(model.get_weights())}},
    )
    """
)
