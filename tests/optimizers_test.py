import keras
import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import optimizers
from tffm import testing

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="sparse (IndexedSlices) gradients exist on the TensorFlow backend",
)


def numpy_adam(
    variable, gradient, m, v, step, lr=0.01, b1=0.9, b2=0.999, eps=1e-7
):
    """One step of dense Adam (Kingma & Ba, Keras' epsilon placement)."""
    m = m + (gradient - m) * (1 - b1)
    v = v + (gradient**2 - v) * (1 - b2)
    alpha = lr * np.sqrt(1 - b2**step) / (1 - b1**step)
    return variable - alpha * m / (np.sqrt(v) + eps), m, v


class SparseOptimizerTest(testing.TestCase):
    def sparse_step(self, optimizer, table, ids, upstream):
        """Applies the gradient of sum(upstream * table[ids])."""
        import tensorflow as tf

        variable = keras.Variable(table)
        optimizer.build([variable])
        with tf.GradientTape() as tape:
            gathered = keras.ops.take(variable.value, ids, axis=0)
            loss = keras.ops.sum(gathered * upstream)
        (gradient,) = tape.gradient(loss, [variable.value])
        self.assertIsInstance(gradient, tf.IndexedSlices)
        optimizer.apply([gradient], [variable])
        return testing.to_numpy(variable).astype(np.float64), optimizer

    @parameterized.named_parameters(("dense_path", 10**9), ("row_wise", 1))
    def test_adam_matches_dense_adam_on_touched_rows(self, lazy_rows):
        table = self.rng.normal(size=(20, 3)).astype("float32")
        ids = np.array([3, 7, 3, 11, 3])  # row 3 read three times
        upstream = self.rng.normal(size=(5, 3)).astype("float32")
        optimizer = optimizers.Adam(0.01, lazy_rows=lazy_rows)
        after, optimizer = self.sparse_step(optimizer, table, ids, upstream)
        # Dense Adam's gradient sums the occurrences of each row first.
        gradient = np.zeros((20, 3))
        np.add.at(gradient, ids, upstream.astype(np.float64))
        expected, m, v = numpy_adam(
            table.astype(np.float64), gradient, 0.0, 0.0, step=1
        )
        touched = np.unique(ids)
        self.assertAllClose(after[touched], expected[touched], tol=(1e-6, 1e-5))
        untouched = np.setdiff1d(np.arange(20), touched)
        self.assertAllEqual(after[untouched], table[untouched])
        slots = [w for w in optimizer.variables if w.shape == (20, 3)]
        got_m, got_v = (testing.to_numpy(s) for s in slots)
        self.assertAllClose(got_m, m, tol=(1e-7, 1e-5))
        self.assertAllClose(got_v, v, tol=(1e-9, 1e-5))

    def test_keras_adam_differs_on_repeated_ids(self):
        # Why tffm has its own: Keras' Adam squares each occurrence.
        table = self.rng.normal(size=(20, 3)).astype("float32")
        ids = np.array([3, 3, 3])
        upstream = np.ones((3, 3), "float32")
        _, keras_adam = self.sparse_step(
            keras.optimizers.Adam(0.01), table, ids, upstream
        )
        velocity = [w for w in keras_adam.variables if "velocity" in w.path][0]
        # Dense Adam: (1 - b2) * (1 + 1 + 1)^2 = 0.009; Keras: 0.003.
        self.assertAllClose(testing.to_numpy(velocity)[3], 0.003, tol=(1e-7, 0))

    @parameterized.named_parameters(("dense_path", 10**9), ("row_wise", 1))
    def test_adagrad_matches_dense_adagrad(self, lazy_rows):
        table = self.rng.normal(size=(20, 2)).astype("float32")
        ids = np.array([1, 5, 1])
        upstream = self.rng.normal(size=(3, 2)).astype("float32")
        optimizer = optimizers.Adagrad(0.1, lazy_rows=lazy_rows)
        after, _ = self.sparse_step(optimizer, table, ids, upstream)
        gradient = np.zeros((20, 2))
        np.add.at(gradient, ids, upstream.astype(np.float64))
        accumulator = 0.1 + gradient**2  # Keras' initial accumulator 0.1
        expected = table - 0.1 * gradient / np.sqrt(accumulator + 1e-7)
        self.assertAllClose(after, expected, tol=(1e-6, 1e-5))

    def test_amsgrad_takes_the_dense_update_even_for_large_tables(self):
        table = self.rng.normal(size=(20, 3)).astype("float32")
        ids = np.array([3, 7, 3])
        upstream = self.rng.normal(size=(3, 3)).astype("float32")
        after, _ = self.sparse_step(
            optimizers.Adam(0.01, amsgrad=True, lazy_rows=1),
            table,
            ids,
            upstream,
        )
        gradient = np.zeros((20, 3), "float32")
        np.add.at(gradient, ids, upstream)
        variable = keras.Variable(table)
        keras.optimizers.Adam(0.01, amsgrad=True).apply(
            [keras.ops.convert_to_tensor(gradient)], [variable]
        )
        # The dense update: Keras' own AMSGrad on the summed rows.
        self.assertAllClose(after, testing.to_numpy(variable), tol=(1e-7, 0))

    @parameterized.named_parameters(
        ("adam", optimizers.Adam), ("adagrad", optimizers.Adagrad)
    )
    def test_lazy_rows_survive_serialization(self, cls):
        config = keras.optimizers.serialize(cls(0.05, lazy_rows=7))
        clone = keras.optimizers.deserialize(config)
        self.assertIsInstance(clone, cls)
        self.assertEqual(clone.lazy_rows, 7)
        self.assertAllClose(clone.learning_rate, 0.05)
        self.assertEqual(cls().lazy_rows, optimizers.LAZY_ROWS)

    def test_models_take_tffm_optimizers_by_name(self):
        model = tffm.FM([tffm.Categorical("a", hash_bins=10)], embedding_dim=2)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        self.assertIsInstance(model.optimizer, optimizers.Adam)
        self.assertTrue(model.jit_compile)
        lazy = optimizers.Adam(lazy_rows=5)
        model.compile(optimizer=lazy, loss="binary_crossentropy")
        self.assertFalse(model.jit_compile)  # XLA has no Unique

    def test_trains_a_model_and_round_trips(self):
        data = tffm.synthetic.make_planted_ctr(2000, num_categorical=3, seed=2)
        encoder = tffm.FeatureEncoder(data.features)
        ids = {k: np.asarray(v) for k, v in encoder(data.raw).items()}
        for lazy_rows in (10**9, 1):
            model = tffm.FM(data.features, embedding_dim=4)
            model.compile(
                optimizer=optimizers.Adam(0.01, lazy_rows=lazy_rows),
                loss="binary_crossentropy",
            )
            history = model.fit(
                ids, data.labels, epochs=3, batch_size=256, verbose=0
            )
            self.assertLess(
                history.history["loss"][-1], history.history["loss"][0]
            )
        config = keras.optimizers.serialize(optimizers.Adam(lazy_rows=7))
        self.assertEqual(keras.optimizers.deserialize(config).lazy_rows, 7)


class RowWiseAverageTest(testing.TestCase):
    """`use_ema` on a row-wise table: the touched rows' average only."""

    def _steps(self, lazy_rows, id_lists, momentum=0.5):
        import tensorflow as tf

        rng = np.random.default_rng(2)
        table = rng.normal(size=(8, 2)).astype("float32")
        variable = keras.Variable(table)
        optimizer = optimizers.Adam(
            0.1, lazy_rows=lazy_rows, use_ema=True, ema_momentum=momentum
        )
        optimizer.build([variable])
        trajectory = []
        for ids in id_lists:
            upstream = rng.normal(size=(len(ids), 2)).astype("float32")
            with tf.GradientTape() as tape:
                gathered = keras.ops.take(variable.value, ids, axis=0)
                loss = keras.ops.sum(gathered * upstream)
            (gradient,) = tape.gradient(loss, [variable.value])
            optimizer.apply([gradient], [variable])
            trajectory.append(testing.to_numpy(variable).astype(np.float64))
        (average,) = optimizer._model_variables_moving_average
        return table, trajectory, testing.to_numpy(average)

    def test_touched_rows_average_untouched_rows_wait(self):
        ids = [np.array([1, 3, 1]), np.array([3, 5]), np.array([1])]
        table, trajectory, average = self._steps(1, ids)
        # Reference: from the table, each step's touched rows move toward
        # that step's weights (the first step copies them).
        expected = table.astype(np.float64).copy()
        for step, (rows, weights) in enumerate(
            zip(ids, trajectory, strict=True)
        ):
            rows = np.unique(rows)
            m = 0.0 if step == 0 else 0.5
            expected[rows] = m * expected[rows] + (1 - m) * weights[rows]
        self.assertAllClose(average, expected, tol=(1e-6, 1e-6))
        never = [0, 2, 4, 6, 7]
        self.assertAllEqual(average[never], table[never])

    def test_dense_tables_keep_keras_average(self):
        ids = [np.array([1, 3, 1]), np.array([3, 5]), np.array([1])]
        _, trajectory, average = self._steps(10**9, ids)
        expected = trajectory[0]
        for weights in trajectory[1:]:
            expected = 0.5 * expected + 0.5 * weights
        self.assertAllClose(average, expected, tol=(1e-6, 1e-6))
