"""`keras.distribution` layouts (JAX): data parallel, tables split by rows."""

from typing import Any


def jax_distribution(name: str) -> Any:
    """`DataParallel`, or `ModelParallel` splitting the table by rows.

    Data parallelism over a single device is no distribution (None): on one
    H100, Keras' `DataParallel` path ran at half the single-device path's
    rows/s with the same weights (`benchmarks/distributed_gpu.py`), so a
    one-GPU job asked for `data-parallel` takes the single-device path.
    """
    import keras  # deferred: Keras

    devices = keras.distribution.list_devices()
    if name == "data-parallel":
        if len(devices) == 1:
            return None
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh(
        shape=(1, len(devices)), axis_names=("batch", "model"), devices=devices
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map(mesh), batch_dim_name="batch"
    )


def layout_map(mesh: Any) -> Any:
    """A `LayoutMap` that splits the embedding tables by rows.

    `FeatureEmbedding`'s row-indexed variables (`embeddings`,
    `(num_rows, embedding_dim)`, and `linear_weights`, `(num_rows,)`) go
    to the mesh's `model` axis by rows, columns whole: a device holds
    `num_rows / devices` rows (JAX needs `num_rows` divisible by the number
    of devices) and the optimizer's slots of them follow. Every other
    variable (the DNN) is replicated.
    """
    import keras  # deferred: Keras

    layouts = keras.distribution.LayoutMap(mesh)
    layouts[r".*/embeddings$"] = ("model", None)
    layouts[r".*/linear_weights$"] = ("model",)
    return layouts


def pad_batches(dataset: Any, multiple: int) -> Any:
    """Pads each batch to a multiple of `multiple` rows with 0-weight rows.

    JAX splits a batch evenly over devices; a batch whose row count does
    not divide (the last one, or one the holdout split thinned) gets rows
    of the first row repeated with weight 0, and real rows the weight
    `padded / real`, so the mean loss is still the mean over the real rows.
    """
    if multiple == 1:
        return dataset
    import tensorflow as tf  # deferred: TensorFlow

    def pad(features: Any, label: Any, *weights: Any) -> Any:
        rows = tf.shape(label)[0]
        padded = (rows + multiple - 1) // multiple * multiple
        extra = padded - rows

        def grow(x: Any) -> Any:
            filler = tf.repeat(x[:1], extra, axis=0)
            return tf.concat([x, filler], axis=0)

        scale = tf.cast(padded, tf.float32) / tf.cast(rows, tf.float32)
        base = weights[0] if weights else tf.ones_like(label, tf.float32)
        weight = tf.concat(
            [tf.cast(base, tf.float32) * scale, tf.zeros([extra])], axis=0
        )
        return {k: grow(v) for k, v in features.items()}, grow(label), weight

    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE)
