"""The flags commands share, declared once.

`add_config_flags` gives a command one flag per `TrainConfig` field (types,
choices and help from the field); `config_from_args` reads them back over
`--config`. The other helpers add the flags several commands take.
"""

import argparse
import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from tffm import constants
from tffm.train.config import READING_FIELDS
from tffm.train.config import TrainConfig
from tffm.train.config import read_config_file
from tffm.train.defaults import AUTO
from tffm.train.defaults import AUTO_TEXT
from tffm.train.defaults import auto_defaults


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """`--verbose`, which every command takes."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's and the other frameworks' own log lines",
    )


def add_model_flag(parser: argparse.ArgumentParser, *, export: bool) -> None:
    """`--model`: the trained model a scoring or export command reads."""
    parser.add_argument(
        "--model",
        required=True,
        help="`tffm train` folder or "
        + ("a .keras" if export else "its .keras"),
    )


def add_config_flags(
    parser: argparse.ArgumentParser, names: Sequence[str] | None = None
) -> None:
    """One flag per `TrainConfig` field: `--embedding-dim`, `--refit`, ...

    Types, choices and help come from the field; every flag defaults to
    None ("not given"), so a config file's value stands unless overridden.
    A field that defaults to `AUTO` takes `auto` as a value too.

    Args:
        parser: where to add the flags.
        names: the fields to add (default: every field with a flag).
    """
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if not meta.get("flag") or (
            names is not None and field.name not in names
        ):
            continue
        flag = "--" + field.name.replace("_", "-")
        base = _base_type(field.type)
        default = (
            field.default_factory()  # type: ignore[misc,operator]
            if field.default is dataclasses.MISSING
            else field.default
        )
        help_text = f"{meta['help']} (default: {_show(default)})"
        kwargs: dict[str, Any] = {"default": None, "help": help_text}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            if item is int:
                kwargs["type"] = int_list
                kwargs["metavar"] = "N,N,..."
            else:
                kwargs["nargs"] = "+"
        else:
            kwargs["type"] = _or_auto(base) if default is AUTO else base
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
                if default is AUTO:
                    kwargs["choices"] = (*meta["choices"], AUTO_TEXT)
        parser.add_argument(flag, dest=field.name, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of `--config` (if any) with the flags given.

    With `--format encoded` and no `--config`, `tffm encode`'s config in
    the encoded folder is the base the flags change.
    """
    overrides = flags_given(args)
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    data = overrides.get("data") or []
    encoding = os.path.join(data[0], "config.json") if len(data) == 1 else ""
    if overrides.get("format") == "encoded" and os.path.isfile(encoding):
        return TrainConfig.from_dict(
            encoding_base(encoding, overrides), source=encoding
        )
    return TrainConfig.from_dict(overrides, source="command line")


def encoding_base(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`tffm encode`'s config with `overrides`, re-defaulted for a new model.

    The encoding's config holds every option resolved for the model it
    was encoded with (by default the FM). Training another model on it
    (`--model deepfm`) gives that model its own defaults (learning rate,
    `ema`, ...) for each option still at the encoding model's default;
    the reading options (the vocabulary's `min_frequency` included) stay
    the encoding's, which fixed them.
    """
    values = read_config_file(path)
    encoded_with = values.get("model")
    task = values.get("task", "binary")
    if (
        overrides.get("model", encoded_with) != encoded_with
        and task in constants.TASKS
        and encoded_with in constants.MODELS
    ):
        old = auto_defaults(
            task,
            str(encoded_with),
            distribution=str(values.get("distribution", "none")),
        )
        for name, default in old.items():
            if name not in READING_FIELDS and values.get(name) == default:
                values.pop(name, None)
    values.update(overrides)
    return values


def flags_given(
    args: argparse.Namespace, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The `TrainConfig` flags given on the command line (of `names`)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if (names is None or f.name in names)
        and getattr(args, f.name, None) is not None
    }


def defaults_of(function: Callable[..., Any]) -> dict[str, Any]:
    """`{parameter: default}` of `function`: its flags default the same."""
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def duration(text: str) -> float:
    """Seconds of `45m`, `2h`, `600s` or `600`."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 45m, 2h or 600, got {text!r}"
        ) from None


def int_list(text: str) -> list[int]:
    """`400,400` as `[400, 400]`."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def _or_auto(base: Callable[[str], Any]) -> Callable[[str], Any]:
    """`base`'s parser that also takes `auto` (kept as the text)."""

    def parse(text: str) -> Any:
        return AUTO_TEXT if text == AUTO_TEXT else base(text)

    parse.__name__ = getattr(base, "__name__", "value")
    return parse


def _base_type(annotation: Any) -> Any:
    """`int | None` -> `int`; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _show(value: Any) -> str:
    if value is AUTO:
        return "auto: by task and model, see docs/defaults.md"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)
