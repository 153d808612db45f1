"""`tffm encode`: scan once, write the encoded rows; train on them many times.

The encoded folder holds `train/` and `holdout/` (or `validation/`) in the
binary format of `tffm.data.encoded`, and `config.json`: the config it was
encoded with, whose reading options a model trained on it keeps.
"""

import dataclasses
import os
from typing import Any

from tffm.data import beam_scan
from tffm.data.encode import encode_files
from tffm.data.lines import raise_row_errors
from tffm.data.lines import resolve_files
from tffm.train.build import build_features
from tffm.train.config import READING_FIELDS
from tffm.train.config import TrainConfig
from tffm.train.outputs import CONFIG_FILE
from tffm.train.outputs import write_config


def encode(
    config: TrainConfig, output: str, *, overwrite: bool = False
) -> dict[str, Any]:
    """Scans `config.data` once and writes its rows encoded.

    Writes `output/train` and `output/holdout` (every `holdout_every`-th
    line of `data`) or `output/validation` (`validation_data`), each read by
    `tffm train --format encoded --data output`, and `output/config.json`.

    Returns:
        `{part: rows}`.
    """
    if config.format == "encoded":
        raise ValueError("The data is encoded already.")
    layout = config.layout
    files = resolve_files(config.data)
    with raise_row_errors():
        scanned, _ = beam_scan.scan_for_training(
            layout, files, folder=config.scan
        )
    features = build_features(layout, scanned)
    os.makedirs(output, exist_ok=True)
    parts: dict[str, tuple[list[str], bool | None]]
    if layout.holdout_every is not None:
        parts = {"train": (files, False), "holdout": (files, True)}
    else:
        validation = list(config.validation_data or [])
        parts = {"train": (files, None), "validation": (validation, None)}
    rows = {}
    for part, (part_files, holdout) in parts.items():
        written = encode_files(
            layout,
            part_files,
            os.path.join(output, part),
            features,
            holdout=holdout,
            seed=config.seed,
            batch_size=config.batch_size,
            overwrite=overwrite,
        )
        rows[part] = int(written.num_rows)
    write_config(os.path.join(output, CONFIG_FILE), config, features)
    return rows


def trained_on_encoding(config: TrainConfig) -> TrainConfig:
    """`config`'s training options over its encoding's reading options.

    What a model trained on encoded data records as its config: `tffm
    evaluate` and `tffm predict` then read raw data as the encoding did.
    """
    path = os.path.join(config.data[0], CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} is missing: re-run `tffm encode`.")
    encoding = TrainConfig.from_file(path)
    if config.task != encoding.task:
        raise ValueError(
            f"The data was encoded for task={encoding.task!r}; received "
            f"task={config.task!r}."
        )
    training = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in READING_FIELDS
    }
    return dataclasses.replace(encoding, **training)
