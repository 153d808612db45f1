"""Training past one device: `plan` says where, `Plan` builds and fits there.

- `plan`: the `Plan` of `TrainConfig.distribution` (strategy or layout,
  global batch and learning rate, each worker's input).
- `strategies`: `tf.distribute` strategies fixed for Keras 3's `fit`.
- `layouts`: `keras.distribution` layouts (JAX).
- `sharding`: each worker's part of the training files.
- `parameter_server`: the parameter-server cluster's own fit loop.
"""

from tffm.train.distribute.layouts import jax_distribution
from tffm.train.distribute.layouts import layout_map
from tffm.train.distribute.layouts import pad_batches
from tffm.train.distribute.plans import Plan
from tffm.train.distribute.plans import plan
from tffm.train.distribute.plans import scale
from tffm.train.distribute.sharding import shard_files
from tffm.train.distribute.strategies import fill_empty_batches
from tffm.train.distribute.strategies import merge_sparse
from tffm.train.distribute.strategies import mirrored_strategy
from tffm.train.distribute.strategies import multi_worker_strategy

__all__ = [
    "Plan",
    "fill_empty_batches",
    "jax_distribution",
    "layout_map",
    "merge_sparse",
    "mirrored_strategy",
    "multi_worker_strategy",
    "pad_batches",
    "plan",
    "scale",
    "shard_files",
]
