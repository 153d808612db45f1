"""Adam and Adagrad for embedding tables: the rows a batch read, exactly.

On the TensorFlow backend an embedding's gradient arrives as sparse rows
(`tf.IndexedSlices`: one slice per id occurrence in the batch). Keras 3's
own Adam and Adagrad then turn it dense twice per step (one full-table
`UnsortedSegmentSum` each) and, for an id read twice in one batch, square
each occurrence's gradient instead of their sum, so their second moment is
not dense Adam's. These optimizers sum the occurrences per row first, then:

- below `lazy_rows` rows: one dense gradient and Keras' own update, which
  is then exactly dense Adam / Adagrad;
- from `lazy_rows` rows on (large vocabularies): a row-wise update that
  reads and writes only the rows the batch touched, in the variable and in
  the optimizer's slots ("lazy" Adam: the update of a touched row is dense
  Adam's from the same state; untouched rows and their moments stay as they
  are instead of decaying). The cost of a step follows the batch, not the
  table: 39 fields x 1M ids train without a full-table update per step.

Dense gradients (every other variable, and every variable on the JAX and
torch backends) take Keras' update unchanged.
"""

from typing import Any

import keras
from keras import ops

from tffm.constants import LAZY_ROWS
from tffm.rows import gather_rows


class _RowWiseUpdates(keras.optimizers.Optimizer):  # type: ignore[misc]
    """What `Adam` and `Adagrad` share: `lazy_rows` and the update dispatch.

    A sparse gradient's occurrences are summed per row, then the update is
    the Keras optimizer's own on the dense gradient (below `lazy_rows`
    rows, or where `dense_only`), else `update_rows` on the touched rows.
    Dense gradients take the Keras update unchanged. Mix in before the
    Keras optimizer: `class Adam(_RowWiseUpdates, keras.optimizers.Adam)`.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        lazy_rows: int. Variables with at least this many rows receiving
            sparse gradients are updated row-wise (see the module). Defaults
            to `LAZY_ROWS`.
        **kwargs: the Keras optimizer's arguments.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        *,
        lazy_rows: int = LAZY_ROWS,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.lazy_rows = lazy_rows
        self._touched: dict[Any, Any] = {}  # var key -> rows, this step

    def build(self, variables: Any) -> None:
        super().build(variables)
        if self.use_ema:
            # Row-wise averages (below) start from the weights, as Keras'
            # dense average does at its first step.
            for variable, average in zip(
                variables, self._model_variables_moving_average, strict=True
            ):
                if average is not None and _is_lazy(variable, self.lazy_rows):
                    average.assign(variable)

    def update_step(
        self, gradient: Any, variable: Any, learning_rate: Any
    ) -> None:
        if not _is_sparse(gradient):
            super().update_step(gradient, variable, learning_rate)
            return
        if self.dense_only() or variable.shape[0] < self.lazy_rows:
            dense = _dense(gradient, variable)
            super().update_step(dense, variable, learning_rate)
            return
        rows, summed = _summed_rows(gradient)
        if self.use_ema and _single_device():
            self._touched[self._var_key(variable)] = rows
        dtype = variable.dtype
        self.update_rows(
            variable,
            rows,
            ops.cast(summed, dtype),
            ops.cast(learning_rate, dtype),
        )

    def _update_model_variables_moving_average(
        self, trainable_variables: Any
    ) -> None:
        """Keras' weight average (`use_ema`); row-wise where updated so.

        A table updated row-wise has its average updated on the same rows
        only (a "lazy" average: an untouched row did not move, so its
        average waits too), so that averaging costs a step what the
        update does, not a pass over a table of millions of rows.
        """
        touched, self._touched = self._touched, {}
        if not self.use_ema:
            return
        for variable, average in zip(
            trainable_variables,
            self._model_variables_moving_average,
            strict=True,
        ):
            if average is None:
                continue
            dtype = variable.dtype
            first = ops.cast(ops.equal(self.iterations, 0), dtype)
            momentum = (1 - first) * ops.cast(self.ema_momentum, dtype)
            rows = touched.get(self._var_key(variable))
            if rows is None:
                average.assign(momentum * average + (1 - momentum) * variable)
                continue
            mixed = momentum * gather_rows(average, rows) + (
                1 - momentum
            ) * gather_rows(variable, rows)
            self.assign(average, _rows(mixed, rows, average))

    def dense_only(self) -> bool:
        """Whether sparse gradients always take the dense update."""
        return False

    def update_rows(
        self, variable: Any, rows: Any, summed: Any, learning_rate: Any
    ) -> None:
        """Updates `variable[rows]` (and its slots) by `summed` `(R, ...)`."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config["lazy_rows"] = self.lazy_rows
        return config


@keras.saving.register_keras_serializable(package="tffm")
class Adam(_RowWiseUpdates, keras.optimizers.Adam):  # type: ignore[misc]
    """`keras.optimizers.Adam` that updates embedding rows exactly.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        lazy_rows: int. Variables with at least this many rows receiving
            sparse gradients are updated row-wise (see the module). Defaults
            to `LAZY_ROWS`.
        **kwargs: `keras.optimizers.Adam` arguments (`beta_1`, `beta_2`,
            `epsilon`, `amsgrad`, ...). With `amsgrad`, updates stay dense.
    """

    def dense_only(self) -> bool:
        return bool(self.amsgrad)

    def update_rows(
        self, variable: Any, rows: Any, summed: Any, learning_rate: Any
    ) -> None:
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        alpha = learning_rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = gather_rows(m, rows)  # (R, ...)
        v_rows = gather_rows(v, rows)
        m_rows = m_rows + (summed - m_rows) * (1 - self.beta_1)
        v_rows = v_rows + (ops.square(summed) - v_rows) * (1 - self.beta_2)
        self.assign(m, _rows(m_rows, rows, m))
        self.assign(v, _rows(v_rows, rows, v))
        delta = m_rows * alpha / (ops.sqrt(v_rows) + self.epsilon)
        self.assign_sub(variable, _rows(delta, rows, variable))


@keras.saving.register_keras_serializable(package="tffm")
class Adagrad(_RowWiseUpdates, keras.optimizers.Adagrad):  # type: ignore[misc]
    """`keras.optimizers.Adagrad` that updates embedding rows exactly.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        lazy_rows: int. As for `Adam`. Adagrad's row-wise update is exactly
            the dense one (an untouched row's accumulator does not change
            in dense Adagrad either).
        **kwargs: `keras.optimizers.Adagrad` arguments.
    """

    def update_rows(
        self, variable: Any, rows: Any, summed: Any, learning_rate: Any
    ) -> None:
        accumulator = self._accumulators[self._get_variable_index(variable)]
        total = gather_rows(accumulator, rows) + ops.square(summed)
        self.assign(accumulator, _rows(total, rows, accumulator))
        delta = learning_rate * summed / ops.sqrt(total + self.epsilon)
        self.assign_sub(variable, _rows(delta, rows, variable))


def get(identifier: Any, **kwargs: Any) -> Any:
    """`"adam"` / `"adagrad"` -> tffm's; other identifiers as Keras reads them.

    Args:
        identifier: an optimizer, its name, or its config.
        **kwargs: arguments for a named tffm optimizer (`learning_rate`).
    """
    if isinstance(identifier, str) and identifier.lower() in _NAMED:
        return _NAMED[identifier.lower()](**kwargs)
    return keras.optimizers.get(identifier)


_NAMED: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": Adam,
    "adagrad": Adagrad,
}


def _is_sparse(gradient: Any) -> bool:
    """`tf.IndexedSlices`, by duck typing (this module imports no TF)."""
    return hasattr(gradient, "indices") and hasattr(gradient, "dense_shape")


def _is_lazy(variable: Any, threshold: int) -> bool:
    return bool(len(variable.shape)) and variable.shape[0] >= threshold


def _single_device() -> bool:
    """No `tf.distribute` strategy: the touched rows are this step's."""
    import tensorflow as tf  # deferred: TensorFlow

    return not tf.distribute.has_strategy()


def lazy_variables(optimizer: Any, variables: Any) -> list[Any]:
    """The `variables` `optimizer` would update row-wise (if sparse)."""
    threshold = getattr(optimizer, "lazy_rows", None)
    if threshold is None:
        return []
    return [v for v in variables if len(v.shape) and v.shape[0] >= threshold]


def _summed_rows(gradient: Any) -> tuple[Any, Any]:
    """Unique rows of a sparse gradient and each row's summed gradient."""
    import tensorflow as tf  # deferred: TensorFlow

    rows, position = tf.unique(gradient.indices)  # (R,), (N,)
    summed = tf.math.unsorted_segment_sum(
        gradient.values, position, tf.shape(rows)[0]
    )  # (R, ...)
    return rows, summed


def _dense(gradient: Any, variable: Any) -> Any:
    """The dense gradient, occurrences summed per row, in one op (XLA-safe)."""
    import tensorflow as tf  # deferred: TensorFlow

    return tf.math.unsorted_segment_sum(
        gradient.values, gradient.indices, variable.shape[0]
    )


def _rows(values: Any, rows: Any, variable: Any) -> Any:
    """Rows of an update, for Keras' scattering `assign*` (TensorFlow)."""
    import tensorflow as tf  # deferred: TensorFlow

    # No dense shape: `tf.shape(variable)` would read (copy) the table.
    return tf.IndexedSlices(values, rows)
