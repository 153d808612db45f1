"""What a training run reads: its feature spec and its encoded datasets.

`open_raw` scans raw files (or reads a scan folder) into the feature spec
and reads every dataset through `tffm.data.open_source`; `open_encoded`
reads `tffm encode`'s folder, whose spec and holdout are fixed already.
Either way the run gets a `TrainingData`: the first fit and the refit both
take their training input from `TrainingData.training_input`.
"""

import dataclasses
import logging
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from tffm.data import beam_scan
from tffm.data.encoded import EncodedData
from tffm.data.encoded import read_encoded
from tffm.data.layout import DataLayout
from tffm.data.lines import RowLog
from tffm.data.lines import resolve_files
from tffm.data.order import InputOrder
from tffm.data.readers import ReadOptions
from tffm.data.sniff import sniff_libsvm
from tffm.data.source import open_source
from tffm.encoder import FeatureEncoder
from tffm.features import Feature
from tffm.train.build import build_features
from tffm.train.config import TrainConfig
from tffm.train.distribute import Plan

logger = logging.getLogger(__name__)

# `build(files, batch_size, record_shard, holdout, order)`: the encoded
# `(features, label)` batches of one input pipeline (`open_source`'s
# arguments of those names).
_Build = Callable[[list[str], int, Any, bool | None, Any], Any]


@dataclasses.dataclass
class TrainingData:
    """A run's feature spec and the datasets of its fits.

    Attributes:
        features: the feature spec.
        rows: rows the first fit trains on.
        validation: encoded `(features, label)` batches of the validation
            rows, cached.
        evaluated_on: what `validation` is, for `metrics.json`.
        holdout: whether the validation rows are a holdout cut from the
            training files (and so what a refit may train on too).
        scan_log: the scan's `RowLog` of the training rows (None when the
            rows were checked elsewhere: a scan folder, an encoding).
        validation_log: the validation reader's `RowLog`, or None.
        files: the training files (globs resolved).
        build: makes one input pipeline's dataset (see `_Build`).
        ordered: whether a training pass follows an `InputOrder` (a resume
            then skips what it trained on; else it restarts the epoch).
        device_rows: for encoded data, `device_rows()` gives the training
            and validation rows as `tffm.train.device_fit.DeviceRows` and
            the epochs' `DeviceOrder`, or None when they do not fit on the
            device; None for raw data.
    """

    features: list[Feature]
    rows: int
    validation: Any
    evaluated_on: str
    holdout: bool
    scan_log: RowLog | None
    validation_log: RowLog | None
    files: list[str]
    build: _Build
    ordered: bool
    device_rows: Callable[[], tuple[Any, Any, Any] | None] | None = None

    def training_input(
        self, plan: Plan, *, with_holdout: bool = False
    ) -> tuple[Any, Any]:
        """The training input of a fit, and the order it follows.

        Encoded data on the JAX backend, on one device, whose rows fit in
        its memory: `DeviceRows` kept there, in a `DeviceOrder` (`model.fit`
        then shuffles and batches on the device). Else a streamed
        dataset, in an `InputOrder` (or None).

        Args:
            plan: where the fit runs (each worker reads its part).
            with_holdout: bool. Train on the holdout rows too (a refit).
        """
        on_device = self._on_device(plan)
        if on_device is not None:
            rows, _, order = on_device
            return rows, order
        order = InputOrder() if self.ordered else None
        holdout = None if with_holdout or not self.holdout else False

        def build(files: list[str], batch: int, shard: Any) -> Any:
            return self.build(files, batch, shard, holdout, order)

        return plan.training_input(self.files, build), order

    def validation_input(self, training: Any) -> Any:
        """The validation data of a fit on `training` (`training_input`).

        `DeviceRows` beside training `DeviceRows`, else the cached batches.
        """
        if self.device_rows is not None and training is not None:
            on_device = self.device_rows()
            if on_device is not None and on_device[0] is training:
                return on_device[1]
        return self.validation

    def _on_device(self, plan: Plan) -> tuple[Any, Any, Any] | None:
        if self.device_rows is None or not plan.on_one_device:
            return None
        return self.device_rows()

    def local_input(self, batch_size: int) -> Any:
        """Shuffled training batches read by this process alone.

        What precise batch norm reads, and what a tuning trial trains on.
        """
        holdout = False if self.holdout else None
        return self.build(self.files, batch_size, None, holdout, None)


def resolve_layout(config: TrainConfig) -> TrainConfig:
    """`config` with what its libsvm files' first rows say filled in.

    A libsvm / libFM file whose rows each hold the same number of `idx:1`
    entries (one per field, as the libFM exports of Frappe and MovieLens
    are) needs no `fields`: they are named `field0, field1, ...` by
    position. Labels of `-1 / +1` in a binary task are read as 0 / 1
    (`binary_labels`). Each choice is logged; other formats, and options
    already set, are left as they are.
    """
    if config.format != "libsvm" or (config.fields and config.binary_labels):
        return config
    layout = sniff_libsvm(resolve_files(config.data))
    changes: dict[str, Any] = {}
    if not config.fields and layout.one_hot and layout.entries:
        changes["fields"] = [f"field{i}" for i in range(layout.entries)]
        logger.info(
            "every row read holds %d idx:1 entries: fields field0..field%d "
            "by position (--fields names them)",
            layout.entries,
            layout.entries - 1,
        )
    if (
        config.task == "binary"
        and not config.binary_labels
        and layout.plus_minus_one
    ):
        changes["binary_labels"] = True
        logger.info("labels are -1 / +1: read as 0 / 1 (--binary-labels)")
    return dataclasses.replace(config, **changes) if changes else config


def open_raw(
    layout: DataLayout,
    data: Sequence[str],
    validation_data: Sequence[str] | None,
    *,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    scan: str | None = None,
    output: str | None = None,
) -> TrainingData:
    """Raw files' `TrainingData`: scanned (or a scan folder's), then read.

    Args:
        layout: how the files are read (`holdout_every` None when
            `validation_data` is given).
        data: training files or globs.
        validation_data: validation files, or None (then the holdout).
        batch_size: int. Rows per validation batch.
        shuffle_buffer: int. Rows in the training shuffle buffer.
        seed: int. Shuffle seed.
        scan: a scan folder to build the features from instead of scanning.
        output: a folder to write the scan to (a later `scan`), at once.
    """
    files = resolve_files(list(data))
    scanned, scan_log = beam_scan.scan_for_training(
        layout, files, folder=scan, output=output
    )
    features = build_features(layout, scanned)
    encoder = FeatureEncoder(features)
    holdout = layout.holdout_every is not None
    valid_source = open_source(
        layout,
        files if holdout else list(validation_data or []),
        batch_size=batch_size,
        holdout=True if holdout else None,
    )

    def build(
        files: list[str],
        batch: int,
        shard: Any,
        part: bool | None,
        order: InputOrder | None,
    ) -> Any:
        source = open_source(
            layout,
            files,
            batch_size=batch,
            holdout=part,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            shard=shard,
            order=order,
        )
        return encoder.map_dataset(source.dataset)

    return TrainingData(
        features=features,
        rows=int(scanned.rows),
        validation=encoder.map_dataset(valid_source.dataset).cache(),
        evaluated_on="holdout" if holdout else "validation_data",
        holdout=holdout,
        scan_log=scan_log,
        validation_log=valid_source.log,
        files=files,
        build=build,
        ordered=layout.format != "parquet",  # Parquet resumes whole epochs
    )


def open_encoded(
    folder: str, *, batch_size: int, shuffle_buffer: int, seed: int
) -> TrainingData:
    """`tffm encode`'s folder as `TrainingData` (its holdout kept apart).

    Args:
        folder: the folder `tffm encode` wrote.
        batch_size: int. Rows per validation batch.
        shuffle_buffer: int. Rows in the training shuffle window.
        seed: int. Shuffle seed.
    """
    train_dir, valid_dir = encoded_parts(folder)
    encoded = EncodedData(train_dir)

    def build(
        files: list[str],
        batch: int,
        shard: Any,
        part: bool | None,
        order: InputOrder | None,
    ) -> Any:
        del files, part, order  # one folder, no holdout, whole epochs
        options = ReadOptions(
            batch_size=batch,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            shard=shard,
        )
        return read_encoded(train_dir, options).dataset

    valid = read_encoded(valid_dir, ReadOptions(batch_size=batch_size))
    loaded: list[Any] = []

    def device_rows() -> tuple[Any, Any, Any] | None:
        if not loaded:
            from tffm.train import device_fit  # deferred: imports JAX

            loaded.append(
                device_fit.encoded_rows(
                    encoded,
                    EncodedData(valid_dir),
                    seed=seed if shuffle_buffer else None,
                )
            )
        return loaded[0]  # type: ignore[no-any-return]

    return TrainingData(
        features=list(encoded.features),
        rows=int(encoded.num_rows),
        validation=valid.dataset.cache(),
        evaluated_on=os.path.basename(valid_dir),
        holdout=False,
        scan_log=None,
        validation_log=None,
        files=[train_dir],
        build=build,
        ordered=False,
        device_rows=device_rows,
    )


def encoded_parts(folder: str) -> tuple[str, str]:
    """`(training, validation)` folders of `tffm encode`'s output."""
    parts = [
        os.path.join(folder, p) for p in ("train", "holdout", "validation")
    ]
    if not os.path.isdir(parts[0]):
        raise FileNotFoundError(
            f"{folder!r} is not a `tffm encode` folder (no train/)."
        )
    valid = parts[1] if os.path.isdir(parts[1]) else parts[2]
    if not os.path.isdir(valid):
        raise FileNotFoundError(
            f"{folder!r} has no holdout/ or validation/ part to validate on."
        )
    return parts[0], valid
