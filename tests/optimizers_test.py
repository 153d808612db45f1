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


# Ten rows, seven steps (ids read by each batch). Row 2: twice at step 1,
# skipped for steps 2-5, twice again at step 6. Row 7: step 1, skipped
# for steps 2-6, touched at step 7. Row 1: three times in one batch.
# Rows 0, 4 and 9: never read.
SCHEDULE = (
    (2, 5, 2, 7),
    (5, 1),
    (1, 1, 1, 6),
    (6, 5),
    (8, 6, 3),
    (2, 2, 5),
    (7, 3),
)
NEVER = np.array([0, 4, 9])
SKIPPED = np.array([2, 7])  # touched, skipped for several steps, touched
ROWS = 10


def summed_gradient(ids, upstream, rows=ROWS):
    """Dense Adam's gradient of sum(upstream * table[ids]): ids summed."""
    gradient = np.zeros((rows, upstream.shape[1]))
    np.add.at(gradient, np.asarray(ids), upstream.astype(np.float64))
    return gradient


def numpy_adam_steps(
    table, schedule, upstreams, *, lazy, lr=0.01, row_steps=False
):
    """Adam over several steps in float64: (weights, m, v) after each.

    `lazy`: only the rows a batch read update their weights and moments;
    the other rows keep both (no decay). Else dense Adam on every row.
    Bias correction uses the global step t (1-based) either way;
    `row_steps` counts each row's own updates instead (a variant the
    optimizer must not match).
    """
    w = table.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    updates = np.zeros(len(w), int)
    states = []
    for t, (ids, upstream) in enumerate(
        zip(schedule, upstreams, strict=True), start=1
    ):
        gradient = summed_gradient(ids, upstream, len(w))
        rows = np.unique(ids) if lazy else np.arange(len(w))
        updates[rows] += 1
        for row in rows:
            step = updates[row] if row_steps else t
            w[row], m[row], v[row] = numpy_adam(
                w[row], gradient[row], m[row], v[row], step, lr=lr
            )
        states.append((w.copy(), m.copy(), v.copy()))
    return states


def numpy_adagrad_steps(
    table, schedule, upstreams, lr=0.1, initial=0.1, eps_inside=True
):
    """Keras' Adagrad in float64 on summed gradients: (weights, acc) each.

    `acc` starts at `initial` (Keras' `initial_accumulator_value`, 0.1);
    epsilon 1e-7 sits inside the square root, as in
    `keras.optimizers.Adagrad` (`eps_inside=False`: outside, a variant the
    optimizer must not match). A row the batch did not read has a zero
    gradient: weights and accumulator stay, so the row-wise update and
    the dense one are the same.
    """
    w = table.astype(np.float64)
    accumulator = np.full_like(w, initial)
    states = []
    for ids, upstream in zip(schedule, upstreams, strict=True):
        gradient = summed_gradient(ids, upstream, len(w))
        accumulator = accumulator + gradient**2
        if eps_inside:
            denominator = np.sqrt(accumulator + 1e-7)
        else:
            denominator = np.sqrt(accumulator) + 1e-7
        w = w - lr * gradient / denominator
        states.append((w.copy(), accumulator.copy()))
    return states


def numpy_average_steps(table, schedule, weights, momentum, *, lazy):
    """`use_ema`'s average over `weights` (one array per step) in float64.

    Starts from the table; the first step copies the (touched) rows, each
    later step moves them toward that step's weights by `1 - momentum`.
    `lazy`: the rows the batch read only; else every row (Keras' average).
    """
    average = table.astype(np.float64)
    for step, (ids, w) in enumerate(zip(schedule, weights, strict=True)):
        rows = np.unique(ids) if lazy else np.arange(len(w))
        mixing = 0.0 if step == 0 else momentum
        average[rows] = mixing * average[rows] + (1 - mixing) * w[rows]
    return average


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


def slot(optimizer, name):
    """The optimizer variable whose path has `name` ("momentum", ...)."""
    (variable,) = [w for w in optimizer.variables if name in w.path]
    return variable


def as_float64(variable):
    return testing.to_numpy(variable).astype(np.float64)


class MultiStepTest(testing.TestCase):
    """`Adam` / `Adagrad` over `SCHEDULE` against float64 numpy references.

    Tolerances (float32 optimizers against float64 references, seven
    steps; largest error measured over seeds 0-4 of `self.rng`): weights
    5e-7 (entries ~1, i.e. a few float32 ulps), Adam's m 6e-8, v 2e-9
    (v ~1e-5 to 1e-2: 3e-7 relative), Adagrad's accumulator 6e-7 (>= 0.1:
    2e-7 relative). Hence (1e-6, 1e-5) for weights, m and accumulators,
    (1e-8, 1e-5) for v. Half the weight error is by design: the bias
    correction raises float32(beta_2) to the step, and 1 - float32(0.999)
    is 1.3e-5 off 1e-3 (alpha 6e-6 off at step 1).
    """

    def upstreams(self, schedule=SCHEDULE, dim=3):
        return [
            self.rng.normal(size=(len(ids), dim)).astype("float32")
            for ids in schedule
        ]

    def sparse_steps(self, optimizer, table, schedule, upstreams, slots=()):
        """Applies, per step, the gradient of sum(upstream * table[ids]).

        Returns the weights and the named slots (float64) after each step.
        """
        import tensorflow as tf

        variable = keras.Variable(table)
        optimizer.build([variable])
        states = []
        for ids, upstream in zip(schedule, upstreams, strict=True):
            with tf.GradientTape() as tape:
                gathered = keras.ops.take(variable.value, np.array(ids), axis=0)
                loss = keras.ops.sum(gathered * upstream)
            (gradient,) = tape.gradient(loss, [variable.value])
            self.assertIsInstance(gradient, tf.IndexedSlices)
            optimizer.apply([gradient], [variable])
            states.append(
                (as_float64(variable),)
                + tuple(as_float64(slot(optimizer, n)) for n in slots)
            )
        return states

    def test_row_wise_adam_is_lazy_adam_step_by_step(self):
        table = self.rng.normal(size=(ROWS, 3)).astype("float32")
        upstreams = self.upstreams()
        got = self.sparse_steps(
            optimizers.Adam(0.01, lazy_rows=1),
            table,
            SCHEDULE,
            upstreams,
            slots=("momentum", "velocity"),
        )
        want = numpy_adam_steps(table, SCHEDULE, upstreams, lazy=True)
        zeros = np.zeros((ROWS, 3))
        previous = (table.astype(np.float64), zeros, zeros)
        for step, ids in enumerate(SCHEDULE):
            (w, m, v), (ref_w, ref_m, ref_v) = got[step], want[step]
            msg = f"step {step + 1}"
            self.assertAllClose(w, ref_w, tol=(1e-6, 1e-5), msg=msg)
            self.assertAllClose(m, ref_m, tol=(1e-6, 1e-5), msg=msg)
            self.assertAllClose(v, ref_v, tol=(1e-8, 1e-5), msg=msg)
            # The rows this batch did not read: weights and moments stay,
            # bit for bit.
            idle = np.setdiff1d(np.arange(ROWS), ids)
            self.assertAllEqual(w[idle], previous[0][idle], msg=msg)
            self.assertAllEqual(m[idle], previous[1][idle], msg=msg)
            self.assertAllEqual(v[idle], previous[2][idle], msg=msg)
            previous = got[step]
        w, m, v = got[-1]
        self.assertAllEqual(w[NEVER], table[NEVER])
        self.assertAllEqual(m[NEVER], 0.0)
        self.assertAllEqual(v[NEVER], 0.0)

    def test_lazy_reference_tells_lazy_from_dense_and_row_steps(self):
        # What the test above would catch: on the skipped-then-touched
        # rows, dense Adam (moments decayed while skipped, weights moved)
        # and a per-row step count for the bias correction both end far
        # outside its tolerance, and so does the optimizer.
        table = self.rng.normal(size=(ROWS, 3)).astype("float32")
        upstreams = self.upstreams()
        got_w = self.sparse_steps(
            optimizers.Adam(0.01, lazy_rows=1), table, SCHEDULE, upstreams
        )[-1][0]
        lazy_w, lazy_m, lazy_v = numpy_adam_steps(
            table, SCHEDULE, upstreams, lazy=True
        )[-1]
        dense_w, dense_m, dense_v = numpy_adam_steps(
            table, SCHEDULE, upstreams, lazy=False
        )[-1]
        local_w = numpy_adam_steps(
            table, SCHEDULE, upstreams, lazy=True, row_steps=True
        )[-1][0]
        for name, other in (("dense", dense_w), ("row steps", local_w)):
            gap = np.abs(lazy_w[SKIPPED] - other[SKIPPED]).max(axis=-1)
            self.assertTrue(np.all(gap > 1e-3), f"{name}: {gap}")
            got_gap = np.abs(got_w[SKIPPED] - other[SKIPPED]).max(axis=-1)
            self.assertTrue(np.all(got_gap > 1e-3), f"{name}: {got_gap}")
        # Dense Adam decays the skipped rows' moments: m by beta_1^4 for
        # row 2 (four steps skipped), v by beta_2^4.
        self.assertGreater(np.abs(lazy_m[2] - dense_m[2]).max(), 1e-3)
        self.assertGreater(np.abs(lazy_v[2] - dense_v[2]).max(), 1e-6)
        # Dense Adam moves rows no batch read, unless their moments are
        # zero (rows never read): lazy and dense agree there.
        self.assertAllEqual(lazy_w[NEVER], dense_w[NEVER])

    def test_dense_path_is_dense_adam_step_by_step(self):
        table = self.rng.normal(size=(ROWS, 3)).astype("float32")
        upstreams = self.upstreams()
        got = self.sparse_steps(
            optimizers.Adam(0.01, lazy_rows=10**9),
            table,
            SCHEDULE,
            upstreams,
            slots=("momentum", "velocity"),
        )
        want = numpy_adam_steps(table, SCHEDULE, upstreams, lazy=False)
        for step in range(len(SCHEDULE)):
            msg = f"step {step + 1}"
            for got_x, want_x, tol in zip(
                got[step],
                want[step],
                ((1e-6, 1e-5), (1e-6, 1e-5), (1e-8, 1e-5)),
                strict=True,
            ):
                self.assertAllClose(got_x, want_x, tol=tol, msg=msg)
        # Row 2, not read at step 2, still moves (its moments decay and
        # its weight follows them); rows never read stay.
        self.assertGreater(np.abs(got[1][0][2] - got[0][0][2]).max(), 1e-3)
        self.assertAllEqual(got[-1][0][NEVER], table[NEVER])

    @parameterized.named_parameters(("dense_path", 10**9), ("row_wise", 1))
    def test_adagrad_step_by_step(self, lazy_rows):
        table = self.rng.normal(size=(ROWS, 2)).astype("float32")
        upstreams = self.upstreams(dim=2)
        got = self.sparse_steps(
            optimizers.Adagrad(0.1, lazy_rows=lazy_rows),
            table,
            SCHEDULE,
            upstreams,
            slots=("accumulator",),
        )
        want = numpy_adagrad_steps(table, SCHEDULE, upstreams)
        previous = (
            table.astype(np.float64),
            np.full((ROWS, 2), np.float32(0.1), np.float64),
        )
        for step, ids in enumerate(SCHEDULE):
            (w, acc), (ref_w, ref_acc) = got[step], want[step]
            msg = f"step {step + 1}"
            self.assertAllClose(w, ref_w, tol=(1e-6, 1e-5), msg=msg)
            self.assertAllClose(acc, ref_acc, tol=(1e-6, 1e-5), msg=msg)
            idle = np.setdiff1d(np.arange(ROWS), ids)
            self.assertAllEqual(w[idle], previous[0][idle], msg=msg)
            self.assertAllEqual(acc[idle], previous[1][idle], msg=msg)
            previous = got[step]
        # Row 1 read three times at step 3: the accumulator adds the
        # square of the sum, not the sum of the squares (what Keras' own
        # Adagrad adds on IndexedSlices); the two differ by far more than
        # the tolerance.
        occurrences = upstreams[2][np.array(SCHEDULE[2]) == 1]
        squares = (occurrences.astype(np.float64) ** 2).sum(axis=0)
        added = got[2][1][1] - got[1][1][1]
        self.assertAllClose(
            added, occurrences.sum(axis=0) ** 2, tol=(1e-5, 1e-5)
        )
        self.assertGreater(np.abs(added - squares).max(), 1e-2)

    @parameterized.named_parameters(("dense_path", 10**9), ("row_wise", 1))
    def test_adagrad_epsilon_inside_the_root(self, lazy_rows):
        # From a zero accumulator with gradients ~1e-4, epsilon (1e-7) is
        # as large as the accumulator (~1e-8): its placement shows. With
        # the default 0.1 accumulator it is below float32 noise.
        table = self.rng.normal(size=(ROWS, 2)).astype("float32")
        schedule = SCHEDULE[:3]
        upstreams = [1e-4 * u for u in self.upstreams(schedule, dim=2)]
        got = self.sparse_steps(
            optimizers.Adagrad(
                0.1, lazy_rows=lazy_rows, initial_accumulator_value=0.0
            ),
            table,
            schedule,
            upstreams,
        )[-1][0]
        want = numpy_adagrad_steps(table, schedule, upstreams, initial=0.0)
        self.assertAllClose(got, want[-1][0], tol=(1e-6, 1e-5))
        outside = numpy_adagrad_steps(
            table, schedule, upstreams, initial=0.0, eps_inside=False
        )
        self.assertGreater(np.abs(outside[-1][0] - want[-1][0]).max(), 1e-2)

    @parameterized.named_parameters(("dense_path", 10**9), ("row_wise", 1))
    def test_average_follows_the_numpy_trajectory(self, lazy_rows):
        table = self.rng.normal(size=(ROWS, 3)).astype("float32")
        upstreams = self.upstreams()
        optimizer = optimizers.Adam(
            0.01, lazy_rows=lazy_rows, use_ema=True, ema_momentum=0.5
        )
        self.sparse_steps(optimizer, table, SCHEDULE, upstreams)
        (average,) = optimizer._model_variables_moving_average
        lazy = lazy_rows == 1
        weights = [
            w
            for w, _, _ in numpy_adam_steps(
                table, SCHEDULE, upstreams, lazy=lazy
            )
        ]
        expected = numpy_average_steps(table, SCHEDULE, weights, 0.5, lazy=lazy)
        self.assertAllClose(average, expected, tol=(1e-6, 1e-5))
        self.assertAllEqual(testing.to_numpy(average)[NEVER], table[NEVER])
        if lazy:
            # Row 2's average waited through steps 2-5: it is not the
            # dense average of the same (lazy) weights.
            dense = numpy_average_steps(
                table, SCHEDULE, weights, 0.5, lazy=False
            )
            self.assertGreater(np.abs(dense[2] - expected[2]).max(), 1e-4)


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
