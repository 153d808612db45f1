"""`InputOrder`: each pass's line order fixed by `(seed, epoch)`, resumable.

A training pass over text files is shuffled with a seed that depends on
`(seed, epoch)` only (not on how many passes this process made), and a
resumed pass skips the batches its first steps already trained on; so a
killed run restarted with the same command reads the same batches in the
same order as an uninterrupted one (`tffm.train.resume`).
"""

from typing import Any

# Each epoch's shuffle seed is `seed * _EPOCH_STRIDE + epoch`.
_EPOCH_STRIDE = 1_000_003
_GRAPH_SEED = 87654321


class InputOrder:
    """The order of a training pass, as TensorFlow variables tf.data reads.

    `arrange` wraps a stream of lines so that each new pass (each Keras
    epoch creates a new iterator) reads `epoch` when it starts and is
    shuffled with seed `(seed, epoch)`; `resume` wraps the pass's batches
    (of a fixed size) so that its first `skip` batches are dropped.
    `ResumeCheckpoint` sets both at each epoch's start.
    """

    def __init__(self) -> None:
        import tensorflow as tf  # deferred: TensorFlow

        # On the host, outside any strategy scope: tf.data reads them.
        with tf.device("/cpu:0"):
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.skip = tf.Variable(0, dtype=tf.int64, trainable=False)

    def arrange(self, lines: Any, shuffle_buffer: int, seed: int | None) -> Any:
        """`lines` (a `tf.data.Dataset`) in this pass's order, resumed."""
        import tensorflow as tf  # deferred: TensorFlow

        base = int(seed or 0) * _EPOCH_STRIDE

        def one_pass(_: Any) -> Any:
            ds = lines
            # A fixed graph-level seed: the shuffle's seed pair is then
            # (_GRAPH_SEED, seed * stride + epoch) whatever the global seed
            # (TF's seed logic cannot take a tensor seed when it is 0).
            tf.compat.v1.get_default_graph().seed = _GRAPH_SEED
            if shuffle_buffer:
                ds = ds.shuffle(
                    shuffle_buffer,
                    seed=base + self.epoch.read_value(),
                    reshuffle_each_iteration=False,
                )
            return ds

        return tf.data.Dataset.from_tensors(0).flat_map(one_pass)

    def resume(self, batches: Any) -> Any:
        """`batches` without the first `skip` of this pass.

        The batches must hold a fixed number of rows each (the readers
        rebatch after masking), so that `skip` steps are `skip` batches.
        """
        import tensorflow as tf  # deferred: TensorFlow

        return tf.data.Dataset.from_tensors(0).flat_map(
            lambda _: batches.skip(self.skip.read_value())
        )

    def set(self, epoch: int, skip: int) -> None:
        self.epoch.assign(epoch)
        self.skip.assign(skip)
