"""`tf.distribute` strategies made to work with Keras 3's `fit`.

Keras 3's TensorFlow trainer needs these fixes to train under
`MirroredStrategy` and `MultiWorkerMirroredStrategy` (`_fit_safe`), to give
the same Adam update on any number of replicas (`merge_sparse`), and to
survive replicas whose input ends first (`fill_empty_batches`).
TensorFlow is imported inside each function: importing this module is free.
"""

from typing import Any


def mirrored_strategy() -> Any:
    """`MirroredStrategy` over the GPUs, else over the logical CPU devices.

    With `reduce` fixed for Keras 3's fit (`_fit_safe`).
    """
    import tensorflow as tf  # deferred: TensorFlow

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    strategy = _fit_safe(tf.distribute.MirroredStrategy)
    return strategy([d.name for d in devices])


def multi_worker_strategy() -> Any:
    """`MultiWorkerMirroredStrategy` with `reduce` fixed for Keras 3's fit.

    Keras 3's TensorFlow trainer cannot `fit` under this strategy in
    multi-worker mode as it is (tensorflow/tensorflow#72388): see
    `_fit_safe`.
    """
    import tensorflow as tf  # deferred: TensorFlow

    return _fit_safe(tf.distribute.MultiWorkerMirroredStrategy)()


def _fit_safe(base: Any) -> Any:
    """A subclass of the strategy `base` whose `reduce` Keras 3's fit takes.

    - each step's logs are scalars, which Keras reduces with
      `reduce("MEAN", value, axis=0)`: "Invalid reduction dimension 0 for
      input with 0 dimensions" (multi-worker). The mean over the replicas
      is what it means: for a scalar, `axis` is dropped here;
    - before the first step it averages a whole input batch over the
      replicas (`reduce("MEAN", batch)`) only to trace the model with its
      shapes, which fails on a dict and on string or integer ids
      (multi-worker), and on replicas' batches of different sizes
      (mirrored: "Inputs to operation AddN of type AddN must have the same
      size and shape. Input 0: [63] != input 1: [64]", when the header
      line leaves the first replica 63 rows of 64). A nested batch gets
      the first replica's part instead: same shapes and dtypes.
    """
    import tensorflow as tf  # deferred: TensorFlow

    class Strategy(base):  # type: ignore[misc, valid-type]
        def reduce(self, reduce_op: Any, value: Any, axis: Any) -> Any:
            if isinstance(value, dict | tuple | list):
                return tf.nest.map_structure(
                    lambda v: self.experimental_local_results(v)[0], value
                )
            local = self.experimental_local_results(value)[0]
            if axis is not None and local.shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return Strategy


def merge_sparse(optimizer: Any) -> None:
    """Sums the duplicate rows of sparse gradients after the all-reduce.

    On the TensorFlow backend the table's gradient is `tf.IndexedSlices`
    with one slice per read (a row read by 40 rows of the batch has 40
    slices), and a `tf.distribute` all-reduce concatenates the replicas'
    slices. Keras' own Adam squares a sparse gradient slice by slice
    (`keras.ops.square` keeps it sparse) before `v` sums them, so its
    second moment gets `sum_i g_i^2` instead of `(sum_i g_i)^2`: not Adam,
    and it depends on how the batch is split: a row gathered once per
    batch (a numeric field's) has one slice on one device and one per
    replica on several (measured: a DeepFM's table 0.0085 apart after one
    step at learning rate 0.01 on 1 vs 2 replicas). Here the all-reduced
    gradient is made dense (`tf.convert_to_tensor`: one segment sum, which
    XLA compiles), as Keras' Adam makes it anyway, so the update is dense
    Adam's on any number of replicas.

    `tffm.optimizers` (which have `lazy_rows`) sum the rows themselves and
    are left alone. This wraps the optimizer's `_all_reduce_sum_gradients`
    (Keras 3's TensorFlow optimizer, where the all-reduce happens): there
    is no public hook between the all-reduce and the update.
    """
    import tensorflow as tf  # deferred: TensorFlow

    if getattr(optimizer, "lazy_rows", None) is not None:
        return
    reduce = getattr(optimizer, "_all_reduce_sum_gradients", None)
    if reduce is None:
        raise RuntimeError(
            "This Keras version's optimizer has no _all_reduce_sum_gradients"
            ": tffm.train.distribute.merge_sparse needs updating."
        )

    def merged(grads_and_vars: Any) -> Any:
        return [
            (
                tf.convert_to_tensor(grad)
                if isinstance(grad, tf.IndexedSlices)
                else grad,
                var,
            )
            for grad, var in reduce(grads_and_vars)
        ]

    optimizer._all_reduce_sum_gradients = merged


def fill_empty_batches(model: Any) -> None:
    """A replica whose input has run out trains on one row of weight 0.

    Under a synchronous strategy every replica takes every step (the
    gradient all-reduce needs them all). When one input pipeline ends
    before the others (workers with fewer lines, or an odd number of
    batches over 2 replicas), `tf.distribute` hands its replicas empty
    batches until all have ended, and Keras' step on 0 rows gives NaN: a
    mean loss of 0 / 0, and batch normalization's moments of no rows go
    into its moving statistics (measured: 2 workers, files of 3,000 and
    300 rows; every weight NaN after one epoch, silently). Here such a
    batch becomes one row of zeros (ids 0: out of vocabulary) with sample
    weight 0: the loss and gradients are 0 and the moments finite. Other
    batches get sample weight 1, which changes no loss or metric.
    (Batch normalization's moving statistics still take that row in, once
    per early-ending replica and epoch; validation's `loss` counts it as a
    row of loss 0, and `embeddings_l2` the rows it reads.)
    """
    import keras  # deferred: Keras, TensorFlow
    import tensorflow as tf

    def filled(data: Any) -> Any:
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if weight is None:
            weight = tf.ones(tf.shape(y)[:1], tf.float32)

        def one_row(t: Any) -> Any:
            return tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype)

        empty = tf.equal(tf.shape(y)[0], 0)
        return tf.cond(
            empty,
            lambda: (
                tf.nest.map_structure(one_row, x),
                one_row(y),
                tf.zeros([1], weight.dtype),
            ),
            lambda: (x, y, weight),
        )

    train_step, test_step = model.train_step, model.test_step
    model.train_step = lambda data: train_step(filled(data))
    model.test_step = lambda data: test_step(filled(data))
