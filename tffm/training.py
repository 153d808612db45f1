"""From data files to a trained model: config, vocabulary pass, fit, save."""

import contextlib
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from tffm import constants
from tffm.config import REFIT_MAX_ROWS
from tffm.config import TrainConfig
from tffm.config import column_kinds
from tffm.config import column_options
from tffm.config import table_l2_for
from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import Lookup
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.features import table_rows


def open_source(
    config: TrainConfig,
    files: list[str],
    *,
    training: bool = False,
    holdout: bool | None = None,
    scoring: bool = False,
    keep: tuple[str, ...] = (),
    shard: tuple[int, int] | None = None,
    order: Any = None,
) -> Any:
    """A reader `Source` over `files`, read as `config` says.

    Args:
        config: the `TrainConfig`.
        files: files or globs.
        training: bool. Shuffle (`config.shuffle_buffer`).
        holdout: bool or None. Read only the holdout part (True), only the
            rest (False), or everything (None).
        scoring: bool. Rows in input order with their file and line
            (`"#file"`, `"#line"`), and the label only if the data has one
            (the label is then 0).
        keep: columns to pass through as raw text (`"#<column>"`).
        shard: `(count, index)`: only every `count`-th line from the
            `index`-th (a worker's part; `tffm.distribute.shard_files`).
        order: `tffm.resume.InputOrder` fixing each epoch's order.
    """
    from tffm import data

    if config.format == "parquet" and (holdout is not None or shard):
        raise ValueError(
            "Parquet data has no line numbers to hold out or shard by: "
            "give `validation_data` (--validation-data), and at least one "
            "file per worker."
        )
    options = data.ReadOptions(
        batch_size=config.batch_size,
        shuffle_buffer=config.shuffle_buffer if training else 0,
        seed=config.seed,
        lenient=config.lenient,
        holdout_every=None if holdout is None else config.holdout_every,
        holdout=bool(holdout),
        in_order=scoring,
        with_position=scoring,
        shard=shard,
        order=order,
    )
    binary = config.task == "binary"
    label = config.label
    if scoring and not has_label(config, files):
        label = None
    if config.format == "criteo":
        return data.read_criteo(
            files, options, has_label=None if scoring else True, keep=keep
        )
    if config.format == "libsvm":
        if not config.fields:
            raise ValueError(
                "libsvm data needs `fields` (--fields: one name per idx:1 "
                "entry of a row) for feature-spec models: its first rows do "
                "not each hold the same number of entries of value 1."
            )
        if keep:
            raise ValueError("libsvm rows have no named columns to keep.")
        return data.read_libsvm(
            files,
            options,
            fields=config.fields,
            binary_labels=config.binary_labels,
            binary=binary,
        )
    kinds = column_kinds(config)
    max_len = {
        n: o.get("max_len", constants.LIST_MAX_LEN)
        for n, o in config.columns.items()
        if o["kind"] == "list"
    }
    if config.format == "parquet":
        return data.read_parquet(
            files,
            options,
            kinds=kinds,
            label=label,
            max_len=max_len,
            binary=binary,
            keep=keep,
        )
    return data.read_csv(
        files,
        options,
        kinds=kinds,
        label=label,
        delimiter=config.delimiter,
        list_separator=config.list_separator,
        max_len=max_len,
        column_names=config.column_names,
        binary=binary,
        keep=keep,
    )


def has_label(config: TrainConfig, files: list[str]) -> bool:
    """Whether `files` hold the label column (scoring takes unlabelled data)."""
    from tffm.data import lines

    first = lines.resolve_files(files)[0]
    if config.format == "libsvm":
        return True
    if config.format == "criteo":
        return lines.first_line(first).count("\t") + 1 == 40
    if config.format == "parquet":
        import pyarrow.parquet as pq

        return config.label in pq.read_schema(first).names
    if config.column_names:
        return config.label in config.column_names
    header = lines.first_line(first).split(config.delimiter)
    return config.label in [h.strip().strip('"') for h in header]


def log_columns(config: TrainConfig) -> set[str]:
    """Numeric columns whose statistics are taken after `log1p`."""
    return {
        name
        for name in column_kinds(config)
        if column_options(config, name).get("transform") == "log1p"
    }


def build_features(config: TrainConfig, scan: Any) -> list[Feature]:
    """The feature spec: vocabularies and numeric statistics from `scan`."""
    features: list[Feature] = []
    for name, kind in column_kinds(config).items():
        opts = column_options(config, name)
        if kind == "numeric":
            _, mean, std = scan.numeric[name]
            features.append(
                Numeric(
                    name,
                    transform=opts.get("transform", "identity"),
                    mean=mean,
                    std=std,
                )
            )
            continue
        lookup: dict[str, Any] = {}
        if opts.get("hash_bins"):
            lookup["hash_bins"] = int(opts["hash_bins"])
        else:
            vocabulary = scan.vocabulary(
                name,
                min_frequency=opts.get("min_frequency", config.min_frequency),
                max_tokens=opts.get("max_tokens", config.max_tokens),
            )
            if not vocabulary:
                raise ValueError(
                    f"Feature {name!r}: no value occurs at least "
                    "min_frequency times in the training data."
                )
            lookup["vocabulary"] = vocabulary
        if kind == "list":
            # Unset, `max_len` and `combiner` take `MultiCategorical`'s
            # defaults.
            shape = {k: opts[k] for k in ("max_len", "combiner") if k in opts}
            features.append(MultiCategorical(name, **shape, **lookup))
        else:
            features.append(Categorical(name, **lookup))
    return features


def written_config(
    config: TrainConfig, features: Sequence[Feature]
) -> dict[str, Any]:
    """`config` as `config.json` holds it.

    A list column states the `max_len` and `combiner` its feature has, so
    that the file rebuilds the same model even where it left them to a
    default that later changes.
    """
    written = config.to_dict()
    columns = written.get("columns") or {}
    for feature in features:
        if isinstance(feature, MultiCategorical) and feature.name in columns:
            columns[feature.name].update(
                max_len=feature.max_len, combiner=feature.combiner
            )
    return written


def build_model(config: TrainConfig, features: list[Feature]) -> Any:
    """A compiled FM / DeepFM / logistic regression for `config`."""
    import keras

    from tffm import optimizers
    from tffm.callbacks import compile_metrics
    from tffm.models import FM
    from tffm.models import DeepFM

    keras.utils.set_random_seed(config.seed)
    table_l2 = table_l2_for(config.table_l2, table_rows(features))
    if config.model == "deepfm":
        model = DeepFM(
            features,
            embedding_dim=config.embedding_dim,
            hidden_units=config.hidden_units,
            dropout=config.dropout,
            batch_norm=config.batch_norm,
            embeddings_l2=config.embeddings_l2,
            table_l2=table_l2,
            linear_l2=config.linear_l2,
            kernel_l2=config.kernel_l2,
            task=config.task,
            dtype=config.precision,
        )
    else:
        model = FM(
            features,
            embedding_dim=config.embedding_dim if config.model == "fm" else 0,
            embeddings_l2=config.embeddings_l2,
            table_l2=table_l2,
            linear_l2=config.linear_l2,
            task=config.task,
            dtype=config.precision,
        )
    binary = config.task == "binary"
    model.compile(
        optimizer=optimizers.Adam(
            config.learning_rate,
            use_ema=bool(config.ema),
            ema_momentum=config.ema or 0.99,
        ),
        loss="binary_crossentropy" if binary else "mean_squared_error",
        metrics=compile_metrics(config.task),
    )
    return model


@dataclasses.dataclass
class TrainResult:
    """A trained model and where its files went."""

    model: Any
    features: list[Feature]
    history: dict[str, list[float]]
    output: str
    metrics: dict[str, Any]


def train(
    config: TrainConfig, output: str, *, verbose: int | str = "auto"
) -> TrainResult:
    """Scans, builds, fits and saves a model as `config` says.

    Writes to `output`: `model.keras`, `config.json` (the effective config),
    `vocab/<feature>.txt`, `history.json`, `metrics.json` and TensorBoard
    logs in `logs/` (when `tensorboard` is installed: the `[data]` extra).
    `metrics.json` describes `model.keras` on the validation rows
    (`evaluated_on` says which). The model early stopping chose is kept as
    `checkpoints/best.keras`; with `refit` it is
    `checkpoints/selection.keras`, and `metrics.json` holds its holdout
    metrics under `selection`, while its top-level metrics are the refit
    model's on the holdout it also trained on (optimistic, and said so).
    """
    from tffm.data import raise_row_errors

    config = resolve_layout(config)
    with raise_row_errors():
        return _train(config, output, verbose)


def resolve_layout(
    config: TrainConfig, *, report: Callable[[str], None] | None = None
) -> TrainConfig:
    """`config` with what its libsvm files' first rows say filled in.

    A libsvm / libFM file whose rows each hold the same number of `idx:1`
    entries (one per field, as the libFM exports of Frappe and MovieLens
    are) needs no `fields`: they are named `field0, field1, ...` by
    position. Labels of `-1 / +1` in a binary task are read as 0 / 1
    (`binary_labels`). Each choice is reported (to stderr by default);
    other formats, and options already set, are left as they are.
    """
    if config.format != "libsvm" or (config.fields and config.binary_labels):
        return config
    from tffm.data.lines import resolve_files
    from tffm.data.sniff import sniff_libsvm

    say = report or (lambda text: print(text, file=sys.stderr))
    layout = sniff_libsvm(resolve_files(config.data))
    changes: dict[str, Any] = {}
    if not config.fields and layout.one_hot and layout.entries:
        changes["fields"] = [f"field{i}" for i in range(layout.entries)]
        say(
            f"tffm: every row read holds {layout.entries} idx:1 entries: "
            f"fields field0..field{layout.entries - 1} by position "
            "(--fields names them)"
        )
    if (
        config.task == "binary"
        and not config.binary_labels
        and layout.plus_minus_one
    ):
        changes["binary_labels"] = True
        say("tffm: labels are -1 / +1: read as 0 / 1 (--binary-labels)")
    return dataclasses.replace(config, **changes) if changes else config


def _train(config: TrainConfig, output: str, verbose: int | str) -> TrainResult:

    from tffm import distribute
    from tffm import resume
    from tffm.data import beam_scan
    from tffm.data.lines import resolve_files
    from tffm.encoder import FeatureEncoder

    if not config.data:
        raise ValueError("No training data: set `data` (or --data).")
    # First: multi-worker collectives must be set up before any TF op.
    plan = distribute.plan(config)
    if plan.serves:  # a parameter-server cluster's worker or ps task
        return TrainResult(None, [], {}, output, plan.serve())
    if (
        plan.num_replicas > 1
        or config.batch_scaling != "global"
        or plan.distribution == "parameter-server"
    ):
        print(f"tffm train: {plan.note}", file=sys.stderr)
    # What the model and the readers use: the global batch, scaled rate.
    run = dataclasses.replace(
        config, batch_size=plan.batch_size, learning_rate=plan.learning_rate
    )
    if not plan.is_chief:  # the chief writes `output`, others beside it
        output = os.path.join(output, f"worker-{plan.worker}")
    os.makedirs(output, exist_ok=True)
    if config.format == "encoded":
        return _train_encoded(config, run, plan, output, verbose)
    use_holdout = not config.validation_data
    # From `config.scan`, or scanned now and written to `output` at once.
    scanned, scan_log = beam_scan.scan_for_training(config, output)
    refit = use_holdout and (
        scanned.rows <= REFIT_MAX_ROWS
        if config.refit is None
        else bool(config.refit)
    )
    features = build_features(config, scanned)
    plan.check(features)
    encoder = FeatureEncoder(features)
    # Each epoch's order depends on (seed, epoch) only, so a resumed run
    # reads what an uninterrupted one would (Parquet: whole epochs).
    order = None if config.format == "parquet" else resume.InputOrder()

    def build(files: list[str], batch: int, shard: Any) -> Any:
        return encoder.map_dataset(
            open_source(
                dataclasses.replace(run, batch_size=batch),
                files,
                training=True,
                holdout=False if use_holdout else None,
                shard=shard,
                order=order,
            ).dataset
        )

    train_ds = plan.training_input(resolve_files(config.data), build)
    valid_files = config.data if use_holdout else config.validation_data
    valid_source = open_source(
        config, list(valid_files or []), holdout=True if use_holdout else None
    )
    valid_ds = encoder.map_dataset(valid_source.dataset).cache()

    def statistics_input() -> Any:  # training rows, on this process
        return encoder.map_dataset(
            open_source(
                run,
                config.data,
                training=True,
                holdout=False if use_holdout else None,
            ).dataset
        )

    return _fit_and_save(
        config,
        run,
        plan,
        output,
        verbose,
        features=features,
        train_ds=train_ds,
        valid_ds=valid_ds,
        statistics_input=statistics_input,
        order=order,
        evaluated_on="holdout" if use_holdout else "validation_data",
        refit=refit,
        # (With `scan`, the training rows were checked by that scan.)
        skipped=None if scan_log is None else (scan_log, valid_source.log),
    )


def _train_encoded(
    config: TrainConfig, run: TrainConfig, plan: Any, output: str, verbose: Any
) -> "TrainResult":
    """`format="encoded"`: train on `tffm encode`'s folder; no scan."""
    from tffm import data

    train_dir, valid_dir = encoded_parts(config)
    features = list(data.EncodedData(train_dir).features)
    plan.check(features)

    def build(files: list[str], batch: int, shard: Any) -> Any:
        options = data.ReadOptions(
            batch_size=batch,
            shuffle_buffer=run.shuffle_buffer,
            seed=run.seed,
            shard=shard,
        )
        return data.read_encoded(train_dir, options).dataset

    valid = data.read_encoded(
        valid_dir, data.ReadOptions(batch_size=run.batch_size)
    ).dataset.cache()

    def statistics_input() -> Any:
        options = data.ReadOptions(
            batch_size=run.batch_size,
            shuffle_buffer=run.shuffle_buffer,
            seed=run.seed,
        )
        return data.read_encoded(train_dir, options).dataset

    return _fit_and_save(
        config,
        run,
        plan,
        output,
        verbose,
        features=features,
        train_ds=plan.training_input([train_dir], build),
        valid_ds=valid,
        statistics_input=statistics_input,
        order=None,
        evaluated_on=os.path.basename(valid_dir),
        refit=False,
        skipped=None,
        # How raw files are read comes from the encoding: `tffm evaluate`
        # and `predict` then read raw data as the model saw it.
        record=_encoding_config(config),
    )


def _encoding_config(config: TrainConfig) -> TrainConfig:
    """`config`'s training options over the encoding's reading options."""
    from tffm.config import READING_FIELDS

    path = os.path.join(config.data[0], "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} is missing: re-run `tffm encode`.")
    encoding = TrainConfig.from_file(path)
    training = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in READING_FIELDS
    }
    if config.task != encoding.task:
        raise ValueError(
            f"The data was encoded for task={encoding.task!r}; received "
            f"task={config.task!r}."
        )
    return dataclasses.replace(encoding, **training)


def encoded_parts(config: TrainConfig) -> tuple[str, str]:
    """`(training, validation)` folders of `tffm encode`'s output."""
    if len(config.data) != 1:
        raise ValueError(
            "format='encoded' takes one folder written by `tffm encode` "
            f"as `data`. Received: data={config.data!r}"
        )
    folder = config.data[0]
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


def encode(
    config: TrainConfig, output: str, *, overwrite: bool = False
) -> dict[str, Any]:
    """`tffm encode`: scan once, write the encoded training and validation rows.

    Writes `output/train` and `output/holdout` (every `holdout_every`-th
    line of `data`) or `output/validation` (`validation_data`), each read by
    `tffm train --format encoded --data output`, and `output/config.json`.

    Returns:
        `{part: rows}`.
    """
    from tffm import data
    from tffm.data import beam_scan
    from tffm.data import raise_row_errors

    if config.format == "encoded":
        raise ValueError("The data is encoded already.")
    use_holdout = not config.validation_data
    with raise_row_errors():
        scanned, _ = beam_scan.scan_for_training(config)  # or config.scan's
    features = build_features(config, scanned)
    os.makedirs(output, exist_ok=True)
    parts = {"train": (config.data, False if use_holdout else None)}
    if use_holdout:
        parts["holdout"] = (config.data, True)
    else:
        parts["validation"] = (list(config.validation_data or []), None)
    rows = {}
    for part, (files, holdout) in parts.items():
        written = data.encode_files(
            config,
            files,
            os.path.join(output, part),
            features,
            holdout=holdout,
            overwrite=overwrite,
        )
        rows[part] = int(written.num_rows)
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(written_config(config, features), f, indent=2)
    return rows


def _fit_and_save(
    config: TrainConfig,
    run: TrainConfig,
    plan: Any,
    output: str,
    verbose: Any,
    *,
    features: list[Feature],
    train_ds: Any,
    valid_ds: Any,
    statistics_input: Callable[[], Any],
    order: Any,
    evaluated_on: str,
    refit: bool,
    skipped: tuple[Any, Any] | None,
    record: TrainConfig | None = None,
) -> "TrainResult":
    """Fits, evaluates, calibrates and saves (any input format)."""
    from tffm import resume
    from tffm.callbacks import fit_callbacks
    from tffm.callbacks import monitor_of
    from tffm.evaluation import evaluate_dataset

    monitor = monitor_of(config)
    chosen = os.path.join(
        output, "checkpoints", "selection.keras" if refit else "best.keras"
    )
    callbacks = fit_callbacks(config, monitor, checkpoint=chosen, logs=output)
    backup = resume.ResumeCheckpoint(
        os.path.join(output, "backup"),
        every=config.checkpoint_every,
        order=order,
        rows_per_step=plan.rows_per_step,
    )
    if not config.resume:
        backup.clear()
    elif backup.state() is not None:
        print(f"tffm train: {backup.describe(config.epochs)}", file=sys.stderr)
    with plan.scope(), quiet_fit():
        model = build_model(run, features)
        plan.prepare(model)
        history = resume.fit(
            model,
            train_ds,
            checkpoint=backup,
            epochs=config.epochs,
            callbacks=callbacks,
            validation_data=plan.validation_input(valid_ds),
            verbose=verbose,
            shuffle=False,  # the reader shuffles (`shuffle_buffer`)
        )
    statistics = _batch_norm_statistics(config, plan, model, statistics_input)
    metrics: dict[str, Any] = dict(
        evaluate_dataset(model, valid_ds, config.task)
    )
    metrics["evaluated_on"] = evaluated_on
    if statistics is not None:
        metrics["batch_norm_statistics"] = statistics
    calibrating = config.calibrate and config.task == "binary"
    if calibrating:  # on rows the model did not train on
        _calibrate(model, valid_ds, metrics, config.task)
    if refit:
        selection = dict(metrics, epochs=len(history["loss"]))
        chosen_model = model
        model, epochs = _refit(
            run, features, history, monitor, verbose, plan, output
        )
        refit_statistics = _batch_norm_statistics(
            config, plan, model, statistics_input
        )
        if calibrating:
            # The refit model trained on the holdout, where it would look
            # calibrated already: it takes the selection model's fit (same
            # recipe and epochs, 10% fewer rows).
            for name in ("scale", "shift"):
                getattr(model.get_layer("logit"), name).assign(
                    getattr(chosen_model.get_layer("logit"), name)
                )
        metrics = dict(evaluate_dataset(model, valid_ds, config.task))
        metrics["evaluated_on"] = (
            "holdout, which the refit model also trained on (optimistic)"
        )
        metrics["refit_epochs"] = epochs
        metrics["selection"] = selection
        if refit_statistics is not None:
            metrics["batch_norm_statistics"] = refit_statistics
        if calibrating:
            metrics["calibration_fit"] = dict(
                selection["calibration_fit"],
                fitted_on="holdout, by the selection model",
            )
    if config.lenient and skipped is not None:
        # The scan read each training row once; the validation rows are
        # cached, so each was read once too.
        metrics["skipped_rows"] = {
            "training": skipped[0].summary(),
            "validation": skipped[1].summary(),
        }
    model.save(os.path.join(output, "model.keras"))
    _write_outputs(output, record or config, features, history, metrics)
    # The run is saved: a new command starts afresh.
    resume.ResumeCheckpoint(os.path.join(output, "backup", "refit")).clear()
    backup.clear()
    return TrainResult(model, features, history, output, metrics)


def _batch_norm_statistics(
    config: TrainConfig, plan: Any, model: Any, batches: Callable[[], Any]
) -> str | None:
    """Precise BN (`config.precise_bn`): what was done, for metrics.json."""
    from tffm.precise_bn import has_batch_norm
    from tffm.precise_bn import recompute_batch_norm

    if not config.precise_bn or not has_batch_norm(model):
        return None
    if plan.num_replicas > 1 or plan.distribution == "parameter-server":
        # Replicas normalized their own parts of each batch.
        return "kept from training (distributed)"
    read = recompute_batch_norm(model, batches())
    return f"recomputed from {read} training batches" if read else None


def _calibrate(
    model: Any, dataset: Any, metrics: dict[str, Any], task: str
) -> None:
    """Platt scaling on the validation rows; metrics before and after."""
    from tffm.calibration import calibrate
    from tffm.evaluation import evaluate_dataset

    before = {k: metrics[k] for k in ("logloss", "ece") if k in metrics}
    parameters = calibrate(model, dataset)
    metrics.update(evaluate_dataset(model, dataset, task))
    metrics["calibration_fit"] = dict(
        parameters,
        fitted_on=metrics["evaluated_on"],
        **{f"{k}_before": v for k, v in before.items()},
    )


def _refit(
    config: TrainConfig,
    features: list[Feature],
    history: Mapping[str, list[float]],
    monitor: str,
    verbose: int | str,
    plan: Any,
    output: str,
) -> tuple[Any, int]:
    """Trains a fresh model on all rows for the best epoch count."""
    import keras

    from tffm import resume
    from tffm.callbacks import mode_of
    from tffm.data.lines import resolve_files
    from tffm.encoder import FeatureEncoder

    scores = np.asarray(history[monitor])
    best = int(
        np.argmax(scores) if mode_of(monitor) == "max" else np.argmin(scores)
    )
    rates = [float(r) for r in history["learning_rate"]]
    if verbose:
        print(
            f"tffm train: refit: a fresh model on every training row, the "
            f"holdout included, for the best epoch count ({best + 1}; "
            "--no-refit skips it)",
            file=sys.stderr,
        )
    encoder = FeatureEncoder(features)
    order = None if config.format == "parquet" else resume.InputOrder()

    def build(files: list[str], batch: int, shard: Any) -> Any:
        return encoder.map_dataset(
            open_source(
                dataclasses.replace(config, batch_size=batch),
                files,
                training=True,
                shard=shard,
                order=order,
            ).dataset
        )

    everything = plan.training_input(resolve_files(config.data), build)
    backup = resume.ResumeCheckpoint(
        os.path.join(output, "backup", "refit"),
        every=config.checkpoint_every,
        order=order,
        rows_per_step=plan.rows_per_step,
    )
    if not config.resume:
        backup.clear()
    with plan.scope(), quiet_fit():
        model = build_model(config, features)
        plan.prepare(model)
        resume.fit(
            model,
            everything,
            checkpoint=backup,
            epochs=best + 1,
            callbacks=[
                keras.callbacks.LearningRateScheduler(lambda e: rates[e])
            ],
            verbose=verbose,
            shuffle=False,
        )
    return model, best + 1


@contextlib.contextmanager
def quiet_fit() -> Iterator[None]:
    """Silences Keras' warning for datasets of unknown length.

    A streamed, filtered `tf.data` input has no known number of batches, so
    Keras learns it when the first epoch ends and warns "Your input ran out
    of data" although nothing is wrong.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Your input ran out of data", category=UserWarning
        )
        yield


def _write_outputs(
    output: str,
    config: TrainConfig,
    features: list[Feature],
    history: Mapping[str, list[float]],
    metrics: Mapping[str, Any],
) -> None:
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(written_config(config, features), f, indent=2)
    vocab_dir = os.path.join(output, "vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    for feature in features:
        if isinstance(feature, Lookup) and feature.vocabulary:
            with open(os.path.join(vocab_dir, f"{feature.name}.txt"), "w") as f:
                f.write("".join(f"{v}\n" for v in feature.vocabulary))
    with open(os.path.join(output, "history.json"), "w") as f:
        json.dump({k: [float(x) for x in v] for k, v in history.items()}, f)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(dict(metrics), f, indent=2)
    if "calibration" in metrics:
        from tffm.evaluation import write_reliability_plot

        write_reliability_plot(
            metrics["calibration"],
            os.path.join(output, "calibration.png"),
            title=f"Reliability on the {metrics['evaluated_on']}",
        )
