"""Feature spec: what each raw input is and how it becomes model inputs.

Id conventions, shared by the encoder, the model and every export path:
- vocabulary features: id 0 = missing (empty string / `-1`), id 1 =
  out-of-vocabulary, ids `2 .. len(vocabulary) + 1` = the vocabulary in order;
- hashed features: id 0 = missing, ids `1 .. hash_bins` =
  `1 + fingerprint64(value) % hash_bins` (TensorFlow's `to_hash_bucket_fast`);
- multi-valued features use the same ids; id 0 is padding and is masked out.

Plain Python and numpy (no Keras, no TensorFlow): the serving side reads the
spec from here on machines that have neither.
"""

import collections
import dataclasses
import json
import math
import re
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tffm import constants

MISSING_ID = 0
OOV_ID = 1
STRING_MISSING = ""
INT_MISSING = -1
# Standardized numeric values are clipped to +-this: finite float32 inputs
# (up to 3.4e38) then never overflow the FM products into inf / NaN.
NUMERIC_BOUND = 1e4

_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The choices of `MultiCategorical.combiner` and `Numeric.transform`.
COMBINERS = ("sum", "mean")
TRANSFORMS = ("identity", "log1p")


@dataclasses.dataclass(frozen=True)
class _Lookup:
    """Fields and checks shared by `Categorical` and `MultiCategorical`."""

    name: str
    vocabulary: tuple[str, ...] | tuple[int, ...] | None = None
    hash_bins: int | None = None
    table: str | None = None

    def __post_init__(self) -> None:
        _validate_name(self.name, "name")
        _validate_lookup(self)
        if self.table is not None:
            _validate_name(self.table, "table", feature=self.name)

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def num_ids(self) -> int:
        """Rows this feature's ids address, reserved ids included."""
        if self.hash_bins is not None:
            return self.hash_bins + 1
        return len(self.vocabulary or ()) + 2

    @property
    def dtype(self) -> Literal["string", "int64"]:
        """Dtype of the raw values."""
        if self.vocabulary is not None and _is_int_vocab(self.vocabulary):
            return "int64"
        return "string"

    @property
    def encoded_dtype(self) -> Literal["int32"]:
        """Dtype of the model input: ids (see the module's conventions)."""
        return "int32"


@dataclasses.dataclass(frozen=True)
class Categorical(_Lookup):
    """A single-valued categorical feature (one id per example).

    Raw input is `(batch_size,)` strings (or ints, for an integer
    vocabulary), `""` / `-1` meaning missing.

    Args:
        name: str. Input name (the same in Keras, SavedModel and ONNX).
        vocabulary: Sequence of `str` or of `int`. Known values, in id order.
            Exactly one of `vocabulary` and `hash_bins` must be given.
        hash_bins: int. Number of hash buckets for values not listed.
        table: str. Embedding table name; features naming the same table
            share one embedding (their vocabularies must be equal). Defaults
            to `name`.
    """

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape of one example's value: a scalar."""
        return ()


@dataclasses.dataclass(frozen=True)
class MultiCategorical(_Lookup):
    """A multi-valued categorical feature (a list of values per example).

    Raw input is a padded `(batch_size, list_length)` array; padding is `""`
    for strings and `-1` for integers. Embeddings of the listed values are
    pooled with `combiner` (padding masked out; an empty list gives a zero
    vector).

    Args:
        name: str. Input name.
        vocabulary: Sequence of `str` or of `int`, as for `Categorical`.
        hash_bins: int, as for `Categorical`.
        table: str, as for `Categorical`.
        max_len: int. Lists are cut to this many values by the data readers.
        combiner: str. `"sum"` (default) or `"mean"`. A sum is what an FM
            makes of a set given as indicators (each listed value
            `x_i = 1`, less the pairs within the list); a mean divides each
            by the list's length. `max_len` bounds the sum's scale; why
            the sum is the default is in `docs/defaults.md`.
    """

    max_len: int = constants.LIST_MAX_LEN
    combiner: str = "sum"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_positive_int(self.max_len):
            raise ValueError(
                f"Feature {self.name!r}: `max_len` must be a positive "
                f"integer. Received: max_len={self.max_len!r}"
            )
        if self.combiner not in COMBINERS:
            raise ValueError(
                f"Feature {self.name!r}: `combiner` must be one of "
                f"{COMBINERS}. Received: combiner={self.combiner!r}"
            )

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape of one example's value: a list of any length."""
        return (None,)


@dataclasses.dataclass(frozen=True)
class Numeric:
    """A real-valued feature; it enters the FM as `x * v` (Guo et al. 2017).

    The model computes `x' = (transform(x) - mean) / std`, clipped to
    `+-NUMERIC_BOUND` (10,000 standard deviations), and uses `x' = 0` where
    `x` is NaN (missing). Raw values must be finite in float32: the readers,
    predictors, servers and the SavedModel signature refuse infinities and
    values beyond +-3.4e38; the clip keeps any other value's probability
    finite.

    Args:
        name: str. Input name.
        transform: str. `"identity"` (default) or `"log1p"`
            (`log(1 + max(x, 0))`, for counts).
        mean: float. Subtracted after `transform`. Defaults to 0.
        std: float. Divides after centering. Defaults to 1.
    """

    name: str
    transform: str = "identity"
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        _validate_name(self.name, "name")
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"Feature {self.name!r}: `transform` must be one of "
                f"{TRANSFORMS}. Received: transform={self.transform!r}"
            )
        if not math.isfinite(self.mean):
            raise ValueError(
                f"Feature {self.name!r}: `mean` must be finite. "
                f"Received: mean={self.mean!r}"
            )
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(
                f"Feature {self.name!r}: `std` must be positive and finite. "
                f"Received: std={self.std!r}"
            )

    @property
    def table_name(self) -> str:
        return self.name

    @property
    def num_ids(self) -> int:
        return 1

    @property
    def dtype(self) -> Literal["float32"]:
        """Dtype of the raw values."""
        return "float32"

    @property
    def encoded_dtype(self) -> Literal["float32"]:
        """Dtype of the model input: the value itself (normalized inside)."""
        return "float32"

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape of one example's value: a scalar."""
        return ()


Feature = Categorical | MultiCategorical | Numeric
# Features whose raw values are looked up (vocabulary or hash) into ids.
Lookup = Categorical | MultiCategorical
_TYPES: dict[str, type[Feature]] = {
    "Categorical": Categorical,
    "MultiCategorical": MultiCategorical,
    "Numeric": Numeric,
}


def serialize_feature(feature: Feature) -> dict[str, Any]:
    """Returns a JSON-compatible dict describing `feature`."""
    config: dict[str, Any] = {"type": type(feature).__name__}
    for field in dataclasses.fields(feature):
        value = getattr(feature, field.name)
        config[field.name] = list(value) if isinstance(value, tuple) else value
    return config


def deserialize_feature(config: Mapping[str, Any] | Feature) -> Feature:
    """Builds a feature from `serialize_feature`'s dict (or returns it)."""
    if isinstance(config, Feature):
        return config
    if not isinstance(config, Mapping):
        raise ValueError(
            "A feature must be a tffm feature or a dict with a 'type' key. "
            f"Received: {config!r}"
        )
    kwargs = dict(config)
    type_name = kwargs.pop("type", None)
    if type_name not in _TYPES:
        raise ValueError(
            f"Unknown feature type {type_name!r} for feature "
            f"{kwargs.get('name')!r}. Expected one of {sorted(_TYPES)}."
        )
    cls = _TYPES[type_name]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(
            f"Feature {kwargs.get('name')!r} of type {type_name}: unknown "
            f"keys {unknown}. Expected some of {sorted(names)}."
        )
    if "vocabulary" in kwargs and kwargs["vocabulary"] is not None:
        kwargs["vocabulary"] = tuple(kwargs["vocabulary"])
    return cls(**kwargs)


def normalize_features(
    features: Iterable[Feature | Mapping[str, Any]],
) -> tuple[Feature, ...]:
    """Validates a feature list as a whole and returns it as a tuple.

    Checks: at least one feature, unique names, and that features sharing an
    embedding table look values up the same way.
    """
    if isinstance(features, str | bytes | Mapping):
        raise ValueError(
            "`features` must be a list of features. "
            f"Received: features={features!r}"
        )
    result = tuple(deserialize_feature(f) for f in features)
    if not result:
        raise ValueError(
            "`features` must hold at least one feature. Received: features=[]"
        )
    seen: set[str] = set()
    tables: dict[str, Feature] = {}
    for feature in result:
        if feature.name in seen:
            raise ValueError(f"Feature name {feature.name!r} appears twice.")
        seen.add(feature.name)
        owner = tables.setdefault(feature.table_name, feature)
        if owner is not feature and not _same_lookup(owner, feature):
            raise ValueError(
                f"Features {owner.name!r} and {feature.name!r} share table "
                f"{feature.table_name!r} but look values up differently; "
                "shared tables need equal `vocabulary` / `hash_bins`."
            )
    return result


def table_layout(features: Sequence[Feature]) -> dict[str, tuple[int, int]]:
    """Returns `{table_name: (offset, num_rows)}` of the fused table."""
    layout: dict[str, tuple[int, int]] = {}
    offset = 0
    for feature in features:
        if feature.table_name not in layout:
            layout[feature.table_name] = (offset, feature.num_ids)
            offset += feature.num_ids
    return layout


def table_rows(features: Sequence[Feature]) -> int:
    """The rows of the fused table: the sum of `table_layout`'s tables."""
    return sum(rows for _, rows in table_layout(features).values())


def features_to_json(features: Sequence[Feature]) -> str:
    """The spec as JSON: what ONNX metadata and SavedModel assets hold."""
    return json.dumps([serialize_feature(f) for f in features], indent=1)


def features_from_json(text: str | bytes) -> tuple[Feature, ...]:
    """Reads `features_to_json`'s text back into a validated spec."""
    try:
        configs = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The feature spec is not valid JSON: {error}"
        ) from None
    if not isinstance(configs, list):
        raise ValueError(
            "The feature spec must be a JSON list of features. "
            f"Received: {type(configs).__name__}"
        )
    return normalize_features(configs)


def check_raw(
    features: Sequence[Feature], raw: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Checks raw feature values and returns them as numpy arrays.

    Checks names (none missing, none unknown), rank, dtype kind, equal
    batch sizes, and that numbers are finite in float32 (NaN means
    missing; infinities and values beyond +-3.4e38 are refused, as the data
    readers and the SavedModel signature refuse them); every error names
    the feature. Returns, per feature, an
    object array of `str` (string features; bytes are decoded as UTF-8),
    `int64` (integer vocabularies) or `float32` (numeric), shaped
    `(batch_size,)` or `(batch_size, list_length)`: what the SavedModel
    signature, the raw-input ONNX graph and `FeatureEncoder` take.
    """
    names = [f.name for f in features]
    missing = [n for n in names if n not in raw]
    if missing:
        raise ValueError(f"Missing features {missing}. Received: {sorted(raw)}")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"Unknown features {unknown}. Expected: {names}")
    checked = {f.name: _raw_array(f, raw[f.name]) for f in features}
    check_batch_size(checked)
    return checked


def check_batch_size(columns: Mapping[str, np.ndarray]) -> int:
    """The batch size (first dimension) all `columns` share.

    Args:
        columns: `{feature_name: array}`, in feature order.

    Returns:
        The batch size; 0 for no columns.

    Raises:
        ValueError: naming the first feature whose batch size differs from
            the first feature's.
    """
    batch_size = None
    for name, value in columns.items():
        if batch_size is None:
            batch_size = value.shape[0]
        elif value.shape[0] != batch_size:
            raise ValueError(
                f"Feature {name!r}: batch size {value.shape[0]} "
                f"differs from the other features' {batch_size}."
            )
    return batch_size or 0


def _raw_array(feature: Feature, value: Any) -> np.ndarray:
    name = feature.name
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(
            f"Feature {name!r}: lists must be padded to one length "
            f"(with {STRING_MISSING!r} or {INT_MISSING})."
        ) from None
    rank = 1 + len(feature.shape)
    if array.ndim != rank:
        shape = "(batch_size,)" if rank == 1 else "(batch_size, list_length)"
        raise ValueError(
            f"Feature {name!r} must have shape {shape}. "
            f"Received shape {array.shape}"
        )
    kind = array.dtype.kind
    if feature.dtype == "string":
        return _strings(name, array)
    if feature.dtype == "int64":
        if kind not in "iu":
            raise ValueError(
                f"Feature {name!r} takes integers. Received dtype {array.dtype}"
            )
        return array.astype(np.int64)
    if kind not in "fiu":
        raise ValueError(
            f"Feature {name!r} takes numbers. Received dtype {array.dtype}"
        )
    with np.errstate(over="ignore"):
        values = array.astype(np.float32)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise ValueError(
            f"Feature {name!r}: row {row} is infinite or beyond float32 "
            f"(+-3.4e38): {array[row]!r}. NaN means missing."
        )
    return values


def _strings(name: str, array: np.ndarray) -> np.ndarray:
    """Object array of `str` (no per-element work for `str` / `U` input)."""
    kind = array.dtype.kind
    try:
        if kind == "U":
            return array.astype(object)
        if kind == "S":
            return np.char.decode(array, "utf-8").astype(object)
        if kind == "O":
            types = set(map(type, array.flat))
            if types <= {str}:
                return array
            if types <= {str, bytes}:
                flat = [
                    v.decode("utf-8") if isinstance(v, bytes) else v
                    for v in array.flat
                ]
                return np.array(flat, dtype=object).reshape(array.shape)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Feature {name!r}: bytes that are not UTF-8 ({error})"
        ) from None
    raise ValueError(
        f"Feature {name!r} takes strings. Received dtype {array.dtype}"
    )


def _same_lookup(a: Feature, b: Feature) -> bool:
    if isinstance(a, Numeric) or isinstance(b, Numeric):
        return False
    return a.vocabulary == b.vocabulary and a.hash_bins == b.hash_bins


def _validate_name(value: object, arg: str, feature: str | None = None) -> None:
    if not isinstance(value, str) or not _NAME_PATTERN.match(value):
        where = f"Feature {feature!r}: " if feature else ""
        raise ValueError(
            f"{where}`{arg}` must be an identifier ([A-Za-z_][A-Za-z0-9_]*), "
            f"usable as a SavedModel and ONNX input name. "
            f"Received: {arg}={value!r}"
        )


def _validate_lookup(feature: _Lookup) -> None:
    vocab: Any = feature.vocabulary
    bins = feature.hash_bins
    if (vocab is None) == (bins is None):
        raise ValueError(
            f"Feature {feature.name!r}: give exactly one of `vocabulary` and "
            f"`hash_bins`. Received: vocabulary={vocab!r}, hash_bins={bins!r}"
        )
    if bins is not None and not _is_positive_int(bins):
        raise ValueError(
            f"Feature {feature.name!r}: `hash_bins` must be a positive "
            f"integer. Received: hash_bins={bins!r}"
        )
    if vocab is None:
        return
    if hasattr(vocab, "tolist"):  # numpy / pandas arrays
        vocab = vocab.tolist()
    if isinstance(vocab, str | bytes) or not isinstance(vocab, Sequence):
        raise ValueError(
            f"Feature {feature.name!r}: `vocabulary` must be a list of "
            f"strings or of integers. Received: vocabulary={vocab!r}"
        )
    if len(vocab) == 0:
        raise ValueError(
            f"Feature {feature.name!r}: `vocabulary` must not be empty. "
            "Received: vocabulary=[]"
        )
    # numpy scalars (from np.unique, pandas) become plain Python values.
    vocab = tuple(v.item() if hasattr(v, "item") else v for v in vocab)
    object.__setattr__(feature, "vocabulary", vocab)  # frozen dataclass
    all_int = _is_int_vocab(vocab)
    if not all_int and not all(isinstance(v, str) for v in vocab):
        raise ValueError(
            f"Feature {feature.name!r}: `vocabulary` must hold only strings "
            f"or only integers. Received types "
            f"{sorted({type(v).__name__ for v in vocab})}"
        )
    reserved = INT_MISSING if all_int else STRING_MISSING
    if reserved in vocab:
        raise ValueError(
            f"Feature {feature.name!r}: `vocabulary` must not contain "
            f"{reserved!r}, which marks a missing value."
        )
    counts = collections.Counter(vocab)
    if len(counts) != len(vocab):
        dupes = [v for v, n in counts.items() if n > 1][:5]
        raise ValueError(
            f"Feature {feature.name!r}: `vocabulary` has duplicates, e.g. "
            f"{dupes}"
        )


def _is_int_vocab(vocab: Sequence[object]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in vocab)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
