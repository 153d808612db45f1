"""Encoded data as a `keras.utils.PyDataset`: `model.fit` without tf.data."""

from typing import Any

import keras
import numpy as np

from tffm.data.encoded import EncodedData
from tffm.data.encoded import EpochReader
from tffm.data.readers import ReadOptions


class EncodedPyDataset(keras.utils.PyDataset):
    """Batches of an encoded dataset, by index, one epoch order per epoch.

    Batch `i` of epoch `e` is the same as the `i`-th batch that
    `EncodedData.batches(options, epoch=e)` yields. `model.fit` calls
    `on_epoch_end` after each epoch, which moves to the next epoch's order.

    Args:
        data: an `EncodedData`.
        options: `ReadOptions` (`repeat` is ignored: Keras asks for epochs).
        epoch: int. The first epoch's order.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `max_queue_size`; threads only: `use_multiprocessing` is
            refused because each process would read its own windows).
    """

    def __init__(
        self,
        data: EncodedData,
        options: ReadOptions,
        *,
        epoch: int = 0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("use_multiprocessing"):
            raise ValueError(
                "`use_multiprocessing` is not supported: use `workers` "
                "(threads)."
            )
        super().__init__(**kwargs)
        self.data = data
        self.options = options
        self.epoch = epoch
        self._reader = EpochReader(data, options)
        self._plan = self._reader.plan(epoch)

    def __len__(self) -> int:
        return -(-self._plan.rows // self.options.batch_size)

    def __getitem__(
        self, index: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch {index} out of range: the epoch has {len(self)}."
            )
        size = self.options.batch_size
        begin = index * size
        return self.data.split(
            self._reader.columns(self._plan, begin, begin + size)
        )

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._plan = self._reader.plan(self.epoch)
