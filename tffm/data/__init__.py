"""Streaming data input (tf.data) and vocabulary / statistics passes.

The readers need TensorFlow (imported when a reader is called, whatever the
Keras backend: tf.data feeds JAX and torch too); Parquet needs `pyarrow`.
"""

from tffm.data.encode import encode_files
from tffm.data.encode import write_encoded
from tffm.data.encoded import EncodedData
from tffm.data.encoded import read_encoded
from tffm.data.lines import DataError
from tffm.data.lines import RowLog
from tffm.data.lines import raise_row_errors
from tffm.data.parquet import read_parquet
from tffm.data.readers import ReadOptions
from tffm.data.readers import Source
from tffm.data.readers import parse_delimited
from tffm.data.readers import parse_libsvm
from tffm.data.readers import read_criteo
from tffm.data.readers import read_csv
from tffm.data.readers import read_libsvm

__all__ = [
    "DataError",
    "EncodedData",
    "ReadOptions",
    "RowLog",
    "Source",
    "encode_files",
    "parse_delimited",
    "parse_libsvm",
    "read_criteo",
    "read_csv",
    "read_encoded",
    "read_libsvm",
    "raise_row_errors",
    "read_parquet",
    "write_encoded",
]
