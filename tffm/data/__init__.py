"""Streaming data input (tf.data) and vocabulary / statistics passes.

The readers need TensorFlow (imported when a reader is called, whatever the
Keras backend: tf.data feeds JAX and torch too); Parquet needs `pyarrow`.
`DataLayout` says how a raw file's rows are read; `open_source` reads files
by it, for training, scans, encoding, evaluation and scoring alike. This
package never imports the training package.
"""

from tffm.data.encode import encode_files
from tffm.data.encode import write_encoded
from tffm.data.encoded import EncodedData
from tffm.data.encoded import read_encoded
from tffm.data.layout import DataLayout
from tffm.data.lines import DataError
from tffm.data.lines import RowLog
from tffm.data.lines import raise_row_errors
from tffm.data.lines import resolve_files
from tffm.data.order import InputOrder
from tffm.data.parquet import read_parquet
from tffm.data.readers import ReadOptions
from tffm.data.readers import Source
from tffm.data.readers import parse_delimited
from tffm.data.readers import parse_libsvm
from tffm.data.readers import read_criteo
from tffm.data.readers import read_csv
from tffm.data.readers import read_libsvm
from tffm.data.source import has_label
from tffm.data.source import open_source

__all__ = [
    "DataError",
    "DataLayout",
    "EncodedData",
    "InputOrder",
    "ReadOptions",
    "RowLog",
    "Source",
    "encode_files",
    "has_label",
    "open_source",
    "parse_delimited",
    "parse_libsvm",
    "raise_row_errors",
    "read_criteo",
    "read_csv",
    "read_encoded",
    "read_libsvm",
    "read_parquet",
    "resolve_files",
    "write_encoded",
]
