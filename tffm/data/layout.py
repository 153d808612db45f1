"""`DataLayout`: how raw data files are read, as the readers and scans take it.

Plain Python (no TensorFlow): the part of a training config that says what
a file's rows hold (format, columns and their kinds, label, separators),
which rows are the holdout, and how the vocabulary pass chooses its values.
`tffm.train.TrainConfig.layout` builds one; `tffm.data.open_source`, the
scans and `tffm.data.encode_files` read files by it.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from tffm import constants


@dataclasses.dataclass(frozen=True)
class DataLayout:
    """How rows are read from raw files, and how vocabularies are chosen.

    Attributes:
        format: one of `tffm.constants.FORMATS` (`"encoded"` data is read by
            `tffm.data.read_encoded` instead).
        task: `"binary"` (labels are checked to be 0 / 1) or
            `"regression"`.
        columns: CSV / Parquet: `{column: options}`, each with its `kind`
            (`numeric`, `categorical`, `integer`, `list`) and, by kind,
            `transform`, `hash_bins`, `min_frequency`, `max_tokens`,
            `max_len`, `combiner`.
        label: the label column (CSV / Parquet).
        fields: libsvm: one field name per `idx:1` entry of a row.
        binary_labels: libsvm: labels > 0 are 1, others 0.
        delimiter: CSV field separator.
        list_separator: separator of the values in a list cell.
        column_names: CSV files without a header line: their columns.
        lenient: skip and count malformed rows instead of failing.
        holdout_every: every N-th line is the holdout, or None when no
            holdout is cut from the data (validation files are given).
        min_frequency: a column's values seen fewer times are out of
            vocabulary (unless the column sets its own).
        max_tokens: a vocabulary keeps at most this many values (None: all).
    """

    format: str = "csv"
    task: str = "binary"
    columns: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    label: str | None = "label"
    fields: tuple[str, ...] | None = None
    binary_labels: bool = False
    delimiter: str = ","
    list_separator: str = "|"
    column_names: tuple[str, ...] | None = None
    lenient: bool = False
    holdout_every: int | None = 10
    min_frequency: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("fields", "column_names"):  # lists arrive from JSON
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def binary(self) -> bool:
        return self.task == "binary"

    def kinds(self) -> dict[str, str]:
        """`{column: kind}` the readers parse."""
        if self.format == "criteo":
            return dict(constants.CRITEO_KINDS)
        if self.format == "libsvm":
            return {name: "integer" for name in self.fields or ()}
        return {name: opts["kind"] for name, opts in self.columns.items()}

    def column_options(self, name: str) -> dict[str, Any]:
        """The options of one column (Criteo: `log1p` for I1..I13)."""
        if self.format == "criteo":
            return (
                {"transform": "log1p"}
                if name in constants.CRITEO_NUMERIC
                else {}
            )
        return dict(self.columns.get(name, {}))

    def log_columns(self) -> set[str]:
        """Numeric columns whose statistics are taken after `log1p`."""
        return {
            name
            for name in self.kinds()
            if self.column_options(name).get("transform") == "log1p"
        }

    def max_lens(self) -> dict[str, int]:
        """`{list column: values kept}` (default `constants.LIST_MAX_LEN`)."""
        return {
            name: self.column_options(name).get(
                "max_len", constants.LIST_MAX_LEN
            )
            for name, kind in self.kinds().items()
            if kind == "list"
        }

    def vocabulary_options(self, name: str) -> dict[str, Any]:
        """`min_frequency` and `max_tokens` of a vocabulary column."""
        options = self.column_options(name)
        return {
            "min_frequency": options.get("min_frequency", self.min_frequency),
            "max_tokens": options.get("max_tokens", self.max_tokens),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON, or a Beam worker's arguments)."""
        values = dataclasses.asdict(self)
        values["columns"] = {k: dict(v) for k, v in self.columns.items()}
        for name in ("fields", "column_names"):
            if values[name] is not None:
                values[name] = list(values[name])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DataLayout":
        return cls(**values)
