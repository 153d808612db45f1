"""`TrainConfig`: what `tffm train` does, as flags, a JSON / TOML file or code.

The one source of truth for the training options: each field carries its
help text, choices and bounds, from which the command line builds its flags
(`tffm.cli`), and against which a config file is checked, key by key, before
any work starts. An option's "not set" is `AUTO` (`"auto"` in files and on
the command line): its value then goes by the task and model
(`tffm.train.defaults`). The parts each step takes come from here:
`layout` (the readers'), `model_options()` and `fit_options()`.
"""

import copy
import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

from tffm import constants
from tffm.constants import LAZY_ROWS
from tffm.data.layout import DataLayout
from tffm.features import COMBINERS
from tffm.features import TRANSFORMS
from tffm.train.defaults import AUTO
from tffm.train.defaults import AUTO_TEXT
from tffm.train.defaults import DEFAULT_MODEL
from tffm.train.defaults import LEGACY_NULL
from tffm.train.defaults import REFIT_MAX_ROWS
from tffm.train.defaults import TABLE_L2
from tffm.train.defaults import auto_defaults
from tffm.train.defaults import legacy_null
from tffm.train.defaults import refit_by_rows
from tffm.train.defaults import table_l2_by_size
from tffm.train.options import FitOptions
from tffm.train.options import ModelOptions

# Options a column of CSV / Parquet data may set, by kind.
_LOOKUP_OPTIONS = ("hash_bins", "min_frequency", "max_tokens")
COLUMN_OPTIONS: dict[str, tuple[str, ...]] = {
    "numeric": ("transform",),
    "categorical": _LOOKUP_OPTIONS,
    "integer": _LOOKUP_OPTIONS,
    "list": (*_LOOKUP_OPTIONS, "max_len", "combiner"),
}
_COLUMN_CHOICES = {"transform": TRANSFORMS, "combiner": COMBINERS}
# The reading options only some formats have, and which each reads
# (`tffm.data.open_source`); `encoded` data keeps its encoding's.
_FORMAT_SPECIFIC = (
    "columns",
    "label",
    "fields",
    "binary_labels",
    "delimiter",
    "list_separator",
    "column_names",
)
_FORMAT_OPTIONS: dict[str, tuple[str, ...]] = {
    "criteo": (),
    "libsvm": ("fields", "binary_labels"),
    "csv": ("columns", "label", "delimiter", "list_separator", "column_names"),
    "parquet": ("columns", "label"),
}
_COLUMN_MINIMUM = {
    "hash_bins": 1,
    "min_frequency": 1,
    "max_tokens": 1,
    "max_len": 1,
}


def option(
    default: Any,
    help: str,  # noqa: A002 (argparse's name)
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    below: float | None = None,
    flag: bool = True,
) -> Any:
    """A `TrainConfig` field with its help, choices and bounds.

    Args:
        default: the default value (lists and dicts are copied per config).
        help: str. One line for `--help`.
        choices: allowed values.
        minimum: smallest allowed number (inclusive).
        below: bound the number must stay under (exclusive).
        flag: bool. Whether `tffm train` has a flag for it (else config
            file only).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "below": below,
        "flag": flag,
    }
    if isinstance(default, list | dict) and default is not AUTO:
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Everything `tffm train` needs; the file form is this as JSON / TOML.

    `columns` (CSV / Parquet) maps a column to its options: `kind`
    (`numeric`, `categorical`, `integer`, `list`), and by kind
    `transform` (`identity` / `log1p`; numeric), `hash_bins`,
    `min_frequency`, `max_tokens` (categorical, integer, list),
    `max_len`, `combiner` (list). Criteo needs none (I1..I13 are log1p
    numerics, C1..C26 categoricals); libsvm files with one `idx:1` entry
    per field name them in `fields`. `monitor` is what early stopping,
    checkpoints and the learning-rate schedule watch: by default
    `val_auc_logloss` for the binary FM, `val_auc` for the other binary
    models and `val_rmse` for regression. With `refit` (and a holdout, not
    `validation_data`), a fresh model is then trained on every training
    row, holdout included, for the best epoch count with the same learning
    rates: all choices are still made on the holdout, the final fit sees
    10% more data.

    Options left `AUTO` take their task's and model's default when the
    config is made (`tffm.train.defaults.auto_defaults`); `table_l2` and
    `refit` may stay `AUTO` until the data is scanned (`for_data`).
    """

    # === Data ===
    data: list[str] = option([], "training files or globs")
    format: str = option("csv", "data format", choices=constants.FORMATS)
    validation_data: list[str] | None = option(
        None, "validation files (default: a holdout of --data)"
    )
    holdout_every: int = option(
        10, "without --validation-data, every N-th line validates", minimum=2
    )
    columns: dict[str, dict[str, Any]] = option(
        {}, "CSV / Parquet columns and their options", flag=False
    )
    label: str | None = option("label", "label column (CSV / Parquet)")
    fields: list[str] | None = option(
        None, "libsvm: one field name per idx:1 entry of a row"
    )
    binary_labels: bool = option(
        False, "libsvm: labels > 0 are 1, others 0 (for -1/+1 files)"
    )
    delimiter: str = option(",", "CSV field separator")
    list_separator: str = option("|", "separator of values in a list cell")
    column_names: list[str] | None = option(
        None, "column names of CSV files without a header line"
    )
    lenient: bool = option(
        False, "skip and count malformed rows instead of failing"
    )
    # === Model ===
    model: str = option(
        DEFAULT_MODEL, "model (see docs/defaults.md)", choices=constants.MODELS
    )
    task: str = option("binary", "task", choices=constants.TASKS)
    embedding_dim: int = option(AUTO, "factor / embedding size", minimum=1)
    hidden_units: list[int] = option(
        AUTO, "DeepFM DNN widths, e.g. 400,400,400"
    )
    dropout: float = option(AUTO, "DNN dropout rate", minimum=0.0, below=1.0)
    batch_norm: bool = option(AUTO, "batch normalization in the DNN")
    embeddings_l2: float = option(
        AUTO, "L2 on the embedding rows a batch reads", minimum=0.0
    )
    table_l2: float = option(
        AUTO,
        "L2 on the whole embedding table each step (binary DeepFM: "
        f"{TABLE_L2} where the table has under {LAZY_ROWS:,} rows, else 0)",
        minimum=0.0,
    )
    linear_l2: float = option(
        AUTO,
        "L2 on the linear weights of the rows a batch reads (by default "
        "--embeddings-l2's; 0 for the regression FM)",
        minimum=0.0,
    )
    kernel_l2: float = option(0.0, "L2 on the DNN kernels", minimum=0.0)
    precision: str = option(
        "float32",
        "dtype policy: float32, or mixed_bfloat16 (bf16 compute, float32 "
        "weights and output head; for GPUs and TPUs)",
        choices=("float32", "mixed_bfloat16"),
    )
    # === Fit ===
    learning_rate: float = option(AUTO, "Adam learning rate", below=math.inf)
    batch_size: int = option(AUTO, "rows per batch", minimum=1)
    epochs: int = option(AUTO, "most epochs to train", minimum=1)
    patience: int = option(
        AUTO, "early stopping: epochs without improvement", minimum=0
    )
    monitor: str = option(
        AUTO,
        "metric the schedule, early stopping and checkpoints watch "
        "(val_auc_logloss for the binary FM, val_auc for the other binary "
        "models, val_rmse for regression; also val_logloss, val_loss)",
    )
    schedule: str = option(
        AUTO,
        "learning-rate schedule",
        choices=("constant", "plateau", "cosine"),
    )
    warmup_epochs: int = option(
        3,
        "epochs before the schedule or early stopping may act (a "
        "factorization model's slow start)",
        minimum=0,
    )
    decay_patience: int = option(
        2, "plateau schedule: flat epochs before a decay", minimum=1
    )
    decay_factor: float = option(
        0.3,
        "plateau schedule: rate multiplier at a decay",
        minimum=0.0,
        below=1.0,
    )
    ema: float = option(
        AUTO,
        "momentum of an exponential moving average of the weights, taken "
        "every step (e.g. 0.99); validation, early stopping and the saved "
        "model use the average (0: off; none with parameter-server)",
        minimum=0.0,
        below=1.0,
    )
    precise_bn: bool = option(
        True,
        "after training, recompute the DNN's batch-norm statistics from "
        "training batches with the kept weights and dropout off (one "
        "device; docs/training.md)",
    )
    calibrate: bool = option(
        True,
        "binary tasks: fit Platt scaling of the logit on the validation rows "
        "after training (AUC unchanged, probabilities calibrated)",
    )
    refit: bool = option(
        AUTO,
        "after early stopping on the holdout, retrain on all rows "
        "(regression: when the holdout is cut from --data and at most "
        f"{REFIT_MAX_ROWS:,} rows remain)",
    )
    linear_guard: bool = option(
        True,
        "fit a linear model on the same features beside the trained one "
        "and say (in metrics.json and at the end) when it scores higher on "
        "the validation rows",
    )
    min_frequency: int = option(
        AUTO,
        "vocabulary: values seen fewer times are out-of-vocabulary",
        minimum=1,
    )
    max_tokens: int | None = option(
        None, "vocabulary: keep at most this many values", minimum=1
    )
    scan: str | None = option(
        None,
        "use this folder's vocabularies and statistics (written by "
        "tffm scan or a previous tffm train) instead "
        "of scanning; its scan.json must match this config",
    )
    shuffle_buffer: int = option(
        100_000, "rows in the shuffle buffer", minimum=0
    )
    seed: int = option(0, "seed of shuffling and initialization")
    # === Distribution and fault tolerance (`distribute`, `resume`)
    distribution: str = option(
        "none",
        "devices / hosts to train on (docs/distributed.md)",
        choices=constants.DISTRIBUTIONS,
    )
    batch_scaling: str = option(
        "global",
        "with N replicas: batch_size is the global batch (global), or per "
        "replica with the learning rate times N (linear) or sqrt(N) (sqrt)",
        choices=constants.BATCH_SCALING,
    )
    resume: bool = option(
        True, "resume a killed run from <output>/backup (same command)"
    )
    checkpoint_every: int = option(
        0,
        "steps between resume checkpoints (0: at the end of each epoch)",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.validation_data, str):
            self.validation_data = [self.validation_data]
        if self.task in constants.TASKS and self.model in constants.MODELS:
            defaults = auto_defaults(
                self.task, self.model, distribution=self.distribution
            )
            for name, value in defaults.items():
                if getattr(self, name) is AUTO:
                    setattr(self, name, value)
        check_values(dataclasses.asdict(self), source="config")
        if self.ema and self.distribution == "parameter-server":
            raise ValueError(
                "config: `ema` is not available with "
                "distribution='parameter-server' (its workers update the "
                "weights asynchronously, with no one step to average at). "
                f"Received: ema={self.ema!r}"
            )
        if self.refit is True and (
            self.validation_data or self.format == "encoded"
        ):
            raise ValueError(
                "config: `refit` retrains on the holdout cut from `data`, "
                + (
                    "and with `validation_data` there is none"
                    if self.validation_data
                    else "and encoded data keeps its holdout apart"
                )
                + ": leave `refit` unset or false (--no-refit)."
            )
        if self.format in ("csv", "parquet") and not self.columns:
            raise ValueError(
                f"format={self.format!r} needs `columns` in the config: "
                '{"column": {"kind": "categorical"}, ...}'
            )

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, source: str = "config"
    ) -> "TrainConfig":
        """Checks every key and value (naming `source`), then builds."""
        if not isinstance(values, Mapping):
            raise ValueError(
                f"{source}: a config must be a JSON object / TOML table of "
                f"options. Received: {type(values).__name__}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise ValueError(
                    f"{source}: unknown key {key!r}{_did_you_mean(key, known)}"
                )
        values = dict(values)
        for key in ("data", "validation_data"):  # one file needs no list
            if isinstance(values.get(key), str):
                values[key] = [values[key]]
        for key, value in values.items():
            if value == AUTO_TEXT and _AUTO_FIELDS.get(key):
                values[key] = AUTO
            elif value is None and key in LEGACY_NULL:
                values[key] = legacy_null(key, values.get("task", "binary"))
        check_values(values, source=source)
        return cls(**values)

    @classmethod
    def from_file(cls, path: str, **overrides: Any) -> "TrainConfig":
        """Reads a `.json` or `.toml` config; `overrides` (not None) win."""
        values = read_config_file(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, source=path)

    def to_dict(self) -> dict[str, Any]:
        """The file form: plain values, `AUTO` written as `"auto"`."""
        return {
            name: AUTO_TEXT if value is AUTO else value
            for name, value in dataclasses.asdict(self).items()
        }

    # === The parts each step takes ===
    @property
    def layout(self) -> DataLayout:
        """How the readers read `data` (no holdout with `validation_data`)."""
        return DataLayout(
            format=self.format,
            task=self.task,
            columns=copy.deepcopy(self.columns),
            label=self.label,
            fields=None if self.fields is None else tuple(self.fields),
            binary_labels=self.binary_labels,
            delimiter=self.delimiter,
            list_separator=self.list_separator,
            column_names=(
                None if self.column_names is None else tuple(self.column_names)
            ),
            lenient=self.lenient,
            holdout_every=None if self.validation_data else self.holdout_every,
            min_frequency=self.min_frequency,
            max_tokens=self.max_tokens,
        )

    def model_options(
        self, *, learning_rate: float | None = None
    ) -> ModelOptions:
        """What the model factory reads (`learning_rate`: scaled by a plan)."""
        self._check_resolved("table_l2")
        return ModelOptions(
            model=self.model,
            task=self.task,
            embedding_dim=self.embedding_dim if self.model != "lr" else 0,
            hidden_units=tuple(self.hidden_units),
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            embeddings_l2=self.embeddings_l2,
            table_l2=self.table_l2,
            linear_l2=self.linear_l2,
            kernel_l2=self.kernel_l2,
            precision=self.precision,
            learning_rate=(
                self.learning_rate if learning_rate is None else learning_rate
            ),
            ema=self.ema,
            seed=self.seed,
        )

    def fit_options(self) -> FitOptions:
        """What the fit and its callbacks read."""
        self._check_resolved("refit")
        return FitOptions(
            task=self.task,
            monitor=self.monitor,
            epochs=self.epochs,
            patience=self.patience,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            decay_patience=self.decay_patience,
            decay_factor=self.decay_factor,
            learning_rate=self.learning_rate,
            ema=self.ema,
            precise_bn=self.precise_bn,
            calibrate=self.calibrate and self.task == "binary",
            refit=self.refit,
            resume=self.resume,
            checkpoint_every=self.checkpoint_every,
        )

    def for_data(self, *, training_rows: int, table_rows: int) -> "TrainConfig":
        """This config with the options that go by the data decided.

        Args:
            training_rows: rows the first fit trains on.
            table_rows: rows of the model's fused embedding table
                (`tffm.features.table_rows`).
        """
        decided: dict[str, Any] = {}
        if self.table_l2 is AUTO:
            decided["table_l2"] = table_l2_by_size(table_rows)
        if self.refit is AUTO:
            decided["refit"] = refit_by_rows(
                training_rows,
                holdout=not self.validation_data and self.format != "encoded",
            )
        return dataclasses.replace(self, **decided) if decided else self

    def _check_resolved(self, name: str) -> None:
        if getattr(self, name) is AUTO:
            raise ValueError(
                f"`{name}` goes by the data: call `for_data` first."
            )


# Whether a field's default is `AUTO` (`"auto"` in a file sets it so).
_AUTO_FIELDS = {
    f.name: f.default is AUTO for f in dataclasses.fields(TrainConfig)
}
# The reading fields in which test data may differ from the training data
# (a headerless or otherwise delimited copy): `tffm evaluate` and
# `tffm predict` take them as flags too.
SCORING_FIELDS = ("delimiter", "list_separator", "column_names", "lenient")
# The fields that say how raw files are read (and so what `tffm encode`
# fixed): a model trained on encoded data keeps them from its encoding.
READING_FIELDS = (
    "data",
    "format",
    "validation_data",
    "holdout_every",
    "columns",
    "label",
    "fields",
    "binary_labels",
    *SCORING_FIELDS,
    "min_frequency",
    "max_tokens",
    "task",
)


def read_config_file(path: str) -> dict[str, Any]:
    """A config file's keys; syntax errors name the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No config file at {path!r}.")
    with open(path, "rb") as f:
        text = f.read()
    try:
        if path.endswith(".toml"):
            import tomllib

            values = tomllib.loads(text.decode("utf-8"))
        else:
            values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}: not valid JSON: {error.msg} "
            f"(column {error.colno})"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:  # tomllib's error
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"{path}: a config must be a JSON object of options. "
            f"Received: {type(values).__name__}"
        )
    return values


def check_values(values: Mapping[str, Any], *, source: str) -> None:
    """Checks each value's type, choices and bounds against its field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if value is AUTO:  # resolved by the task and model
            continue
        field = fields[key]
        where = f"{source}: `{key}`"
        if not _matches(value, field.type):
            raise ValueError(
                f"{where} must be {_describe(field.type)}. Received: {value!r}"
            )
        meta = field.metadata
        if value is None or isinstance(value, list | dict | bool | str):
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(
                    f"{where} must be one of {meta['choices']}. "
                    f"Received: {value!r}"
                )
            continue
        if meta["minimum"] is not None and not value >= meta["minimum"]:
            raise ValueError(
                f"{where} must be >= {meta['minimum']}. Received: {value!r}"
            )
        if meta["below"] is not None and not value < meta["below"]:
            raise ValueError(
                f"{where} must be < {meta['below']}. Received: {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be finite. Received: {value!r}")
    hidden = values.get("hidden_units", AUTO)
    if hidden is not AUTO and any(u < 1 for u in hidden):
        raise ValueError(
            f"{source}: `hidden_units` must be positive. "
            f"Received: {values['hidden_units']!r}"
        )
    rate = values.get("learning_rate", AUTO)
    if rate is not AUTO and not rate > 0:
        raise ValueError(
            f"{source}: `learning_rate` must be > 0. "
            f"Received: {values['learning_rate']!r}"
        )
    delimiter = values.get("delimiter", ",")
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"{source}: `delimiter` must be one character, not a double "
            f"quote or a line break (a tab: $'\\t' in bash). Received: "
            f"{delimiter!r}"
        )
    if values.get("list_separator") == "":
        raise ValueError(f"{source}: `list_separator` must not be empty.")
    if "columns" in values:
        check_columns(values["columns"], source=source)
    check_format_options(values, source=source)
    label = values.get("label")
    if label is not None and label in values.get("columns", {}):
        raise ValueError(
            f"{source}: the label column {label!r} is also listed in "
            "`columns`; a model must not read its own label."
        )


def check_format_options(values: Mapping[str, Any], *, source: str) -> None:
    """Refuses reading options the data format's reader would ignore.

    E.g. `columns` (a `hash_bins` for `C1`) or `delimiter` with Criteo
    data, whose columns and layout are fixed; an option left at its
    default is fine. `encoded` data is read as its encoding says.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    data_format = values.get("format", fields["format"].default)
    if data_format not in _FORMAT_OPTIONS:
        return
    allowed = _FORMAT_OPTIONS[data_format]
    for key in _FORMAT_SPECIFIC:
        if key not in values or key in allowed:
            continue
        field = fields[key]
        default = (
            field.default_factory()  # type: ignore[misc,operator]
            if field.default is dataclasses.MISSING
            else field.default
        )
        if values[key] == default:
            continue
        hint = (
            " Criteo's 39 columns are fixed (I1..I13 log1p numerics, "
            "C1..C26 categoricals); `min_frequency` and `max_tokens` set "
            "their vocabularies."
            if data_format == "criteo" and key == "columns"
            else ""
        )
        raise ValueError(
            f"{source}: `{key}` does not apply to format {data_format!r}, "
            f"whose reader would ignore it. Options of {data_format!r} "
            f"data: {list(allowed) or 'none'}.{hint}"
        )


def check_columns(columns: Mapping[str, Any], *, source: str) -> None:
    """Checks `columns`: each a dict with a known `kind` and its options."""
    for name, opts in columns.items():
        where = f"{source}: columns.{name}"
        if not isinstance(opts, dict):
            raise ValueError(
                f'{where} must be an object such as {{"kind": "categorical"}}.'
                f" Received: {opts!r}"
            )
        kind = opts.get("kind")
        if kind not in COLUMN_OPTIONS:
            raise ValueError(
                f"{where}: `kind` must be one of "
                f"{tuple(COLUMN_OPTIONS)}. Received: kind={kind!r}"
            )
        allowed = COLUMN_OPTIONS[kind]
        for key, value in opts.items():
            if key == "kind":
                continue
            if key not in allowed:
                raise ValueError(
                    f"{where}: unknown option {key!r} for kind {kind!r}"
                    f"{_did_you_mean(key, allowed)} Options of {kind!r} "
                    f"columns: {list(allowed)}"
                )
            if key in _COLUMN_CHOICES and value not in _COLUMN_CHOICES[key]:
                raise ValueError(
                    f"{where}: `{key}` must be one of "
                    f"{_COLUMN_CHOICES[key]}. Received: {value!r}"
                )
            if key in _COLUMN_MINIMUM and not (
                _is_int(value) and value >= _COLUMN_MINIMUM[key]
            ):
                raise ValueError(
                    f"{where}: `{key}` must be an integer >= "
                    f"{_COLUMN_MINIMUM[key]}. Received: {value!r}"
                )


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON / TOML value fits a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    raise TypeError(f"unsupported annotation {annotation!r}")


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        item = typing.get_args(annotation)[0]
        plural = {int: "integers", float: "numbers"}.get(item, "strings")
        return f"a list of {plural}"
    if origin is dict:
        return "an object"
    names = {bool: "true/false", int: "an integer", float: "a number"}
    return names.get(annotation, "a string")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)." if close else "."
