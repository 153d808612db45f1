"""Streaming data input (tf.data) and vocabulary / statistics passes.

Needs TensorFlow (imported lazily, when a reader is called); Parquet needs
`pyarrow`.
"""

from tffm.data.parquet import read_parquet
from tffm.data.readers import CRITEO_CATEGORICAL
from tffm.data.readers import CRITEO_NUMERIC
from tffm.data.readers import Source
from tffm.data.readers import read_criteo
from tffm.data.readers import read_csv
from tffm.data.readers import read_libsvm

__all__ = [
    "CRITEO_CATEGORICAL",
    "CRITEO_NUMERIC",
    "Source",
    "read_criteo",
    "read_csv",
    "read_libsvm",
    "read_parquet",
]
