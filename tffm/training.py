"""From data files to a trained model: config, vocabulary pass, fit, save."""

import dataclasses
import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric

FORMATS = ("criteo", "libsvm", "csv", "parquet")
MODELS = ("deepfm", "fm", "lr")


@dataclasses.dataclass
class TrainConfig:
    """Everything `tffm train` needs; the file form is this as JSON / TOML.

    `columns` (CSV / Parquet) maps a column to its options: `kind`
    (`numeric`, `categorical`, `integer`, `list`), and optionally
    `hash_bins`, `min_frequency`, `transform` (`identity` / `log1p`),
    `max_len`, `combiner`. Criteo needs none (I1..I13 are log1p numerics,
    C1..C26 categoricals); libsvm files with one `idx:1` entry per field
    name them in `fields`. `monitor` is what early stopping, checkpoints and
    the learning-rate schedule watch: default `val_auc` (binary) or
    `val_loss` (regression). With `refit` (and a holdout, not
    `validation_data`), a fresh model is then trained on every training row,
    holdout included, for the best epoch count with the same learning rates:
    all choices are still made on the holdout, the final fit sees 10% more
    data.
    """

    data: list[str] = dataclasses.field(default_factory=list)
    format: str = "csv"
    validation_data: list[str] | None = None
    holdout_every: int = 10
    columns: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    label: str | None = "label"
    fields: list[str] | None = None
    binary_labels: bool = False
    delimiter: str = ","
    column_names: list[str] | None = None
    model: str = "deepfm"
    task: str = "binary"
    embedding_dim: int = 8
    hidden_units: list[int] = dataclasses.field(
        default_factory=lambda: [400, 400, 400]
    )
    dropout: float = 0.0
    batch_norm: bool = False
    embeddings_l2: float = 0.0
    table_l2: float = 0.0
    kernel_l2: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 1024
    epochs: int = 10
    patience: int = 2
    monitor: str | None = None
    refit: bool = False
    min_frequency: int = 1
    max_tokens: int | None = None
    shuffle_buffer: int = 100_000
    seed: int = 0
    lenient: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.validation_data, str):
            self.validation_data = [self.validation_data]
        for arg, value, allowed in (
            ("format", self.format, FORMATS),
            ("model", self.model, MODELS),
            ("task", self.task, ("binary", "regression")),
        ):
            if value not in allowed:
                raise ValueError(
                    f"`{arg}` must be one of {allowed}. "
                    f"Received: {arg}={value!r}"
                )
        if self.format in ("csv", "parquet") and not self.columns:
            raise ValueError(
                f"format={self.format!r} needs `columns` in the config: "
                '{"column": {"kind": "categorical"}, ...}'
            )

    @classmethod
    def from_file(cls, path: str, **overrides: Any) -> "TrainConfig":
        """Reads a `.json` or `.toml` config; `overrides` win."""
        with open(path, "rb") as f:
            if path.endswith(".toml"):
                import tomllib

                values = tomllib.load(f)
            else:
                values = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def column_kinds(config: TrainConfig) -> dict[str, str]:
    """`{column: kind}` the readers parse for this config."""
    from tffm.data import CRITEO_CATEGORICAL
    from tffm.data import CRITEO_NUMERIC

    if config.format == "criteo":
        kinds = {n: "numeric" for n in CRITEO_NUMERIC}
        kinds.update({n: "categorical" for n in CRITEO_CATEGORICAL})
        return kinds
    if config.format == "libsvm":
        return {n: "integer" for n in config.fields or ()}
    return {name: opts["kind"] for name, opts in config.columns.items()}


def column_options(config: TrainConfig, name: str) -> dict[str, Any]:
    """The options of one column (Criteo: log1p for I1..I13)."""
    if config.format == "criteo":
        return {"transform": "log1p"} if name.startswith("I") else {}
    return dict(config.columns.get(name, {}))


def open_source(
    config: TrainConfig,
    files: list[str],
    *,
    training: bool = False,
    holdout: bool | None = None,
) -> Any:
    """A reader `Source` over `files` (`holdout` picks a line-split part)."""
    from tffm import data

    options: dict[str, Any] = {
        "batch_size": config.batch_size,
        "shuffle_buffer": config.shuffle_buffer if training else 0,
        "seed": config.seed,
    }
    if config.format != "parquet":
        options["lenient"] = config.lenient
        if holdout is not None:
            options["holdout_every"] = config.holdout_every
            options["holdout"] = holdout
    elif holdout is not None:
        raise ValueError("Parquet data needs `validation_data`.")
    if config.format == "criteo":
        return data.read_criteo(files, **options)
    if config.format == "libsvm":
        if not config.fields:
            raise ValueError(
                "libsvm data needs `fields` (one idx:1 entry per field per "
                "row) for feature-spec models."
            )
        return data.read_libsvm(
            files,
            fields=config.fields,
            binary_labels=config.binary_labels,
            **options,
        )
    kinds = column_kinds(config)
    max_len = {
        n: o.get("max_len", 16)
        for n, o in config.columns.items()
        if o["kind"] == "list"
    }
    if config.format == "parquet":
        return data.read_parquet(
            files, kinds=kinds, label=config.label, max_len=max_len, **options
        )
    return data.read_csv(
        files,
        kinds=kinds,
        label=config.label,
        delimiter=config.delimiter,
        max_len=max_len,
        column_names=config.column_names,
        **options,
    )


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
            features.append(
                MultiCategorical(
                    name,
                    max_len=opts.get("max_len", 16),
                    combiner=opts.get("combiner", "mean"),
                    **lookup,
                )
            )
        else:
            features.append(Categorical(name, **lookup))
    return features


def build_model(config: TrainConfig, features: list[Feature]) -> Any:
    """A compiled FM / DeepFM / logistic regression for `config`."""
    import keras

    from tffm.models import FM
    from tffm.models import DeepFM

    keras.utils.set_random_seed(config.seed)
    if config.model == "deepfm":
        model = DeepFM(
            features,
            embedding_dim=config.embedding_dim,
            hidden_units=config.hidden_units,
            dropout=config.dropout,
            batch_norm=config.batch_norm,
            embeddings_l2=config.embeddings_l2,
            table_l2=config.table_l2,
            kernel_l2=config.kernel_l2,
            task=config.task,
        )
    else:
        model = FM(
            features,
            embedding_dim=config.embedding_dim if config.model == "fm" else 0,
            embeddings_l2=config.embeddings_l2,
            table_l2=config.table_l2,
            task=config.task,
        )
    binary = config.task == "binary"
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy" if binary else "mean_squared_error",
        metrics=[keras.metrics.AUC(name="auc")]
        if binary
        else [keras.metrics.RootMeanSquaredError(name="rmse")],
    )
    return model


@dataclasses.dataclass
class TrainResult:
    """A trained model and where its files went."""

    model: Any
    features: list[Feature]
    history: dict[str, list[float]]
    output: str
    metrics: dict[str, float]


def train(
    config: TrainConfig, output: str, *, verbose: int | str = "auto"
) -> TrainResult:
    """Scans, builds, fits and saves a model as `config` says.

    Writes to `output`: `model.keras`, `config.json` (the effective config),
    `vocab/<feature>.txt`, `history.json`, `metrics.json` (validation),
    `checkpoints/best.keras` and TensorBoard logs in `logs/` (when
    `tensorboard` is installed: the `[data]` extra).
    """
    import keras

    from tffm.data.vocab import scan as scan_data
    from tffm.encoder import FeatureEncoder

    if not config.data:
        raise ValueError("No training data: set `data` (or --data).")
    os.makedirs(output, exist_ok=True)
    use_holdout = not config.validation_data
    kinds = column_kinds(config)
    log_columns = {
        n
        for n in kinds
        if column_options(config, n).get("transform") == "log1p"
    }
    scanned = scan_data(
        open_source(
            config, config.data, holdout=False if use_holdout else None
        ).dataset,
        kinds,
        log_columns=log_columns,
    )
    features = build_features(config, scanned)
    model = build_model(config, features)
    encoder = FeatureEncoder(features)
    train_ds = encoder.map_dataset(
        open_source(
            config,
            config.data,
            training=True,
            holdout=False if use_holdout else None,
        ).dataset
    )
    valid_files = config.data if use_holdout else config.validation_data
    valid_ds = encoder.map_dataset(
        open_source(
            config,
            list(valid_files or []),
            holdout=True if use_holdout else None,
        ).dataset
    ).cache()
    monitor = config.monitor or (
        "val_auc" if config.task == "binary" else "val_loss"
    )
    mode = "max" if monitor.endswith("auc") else "min"
    callbacks = [
        # Adam's constant step leaves a noise floor; a smaller step once
        # the validation metric stalls gets closer to the optimum.
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.2, patience=0, min_lr=1e-5
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode=mode,
            patience=config.patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output, "checkpoints", "best.keras"),
            monitor=monitor,
            mode=mode,
            save_best_only=True,
        ),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(output, "logs"))
        )
    os.makedirs(os.path.join(output, "checkpoints"), exist_ok=True)
    history = model.fit(
        train_ds,
        validation_data=valid_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
    ).history
    labels, predictions = predict_dataset(model, valid_ds)
    metrics = evaluate_predictions(labels, predictions, config.task)
    if config.refit and use_holdout:
        model = _refit(config, features, history, monitor, verbose)
    model.save(os.path.join(output, "model.keras"))
    _write_outputs(output, config, features, history, metrics)
    return TrainResult(model, features, history, output, metrics)


def _refit(
    config: TrainConfig,
    features: list[Feature],
    history: Mapping[str, list[float]],
    monitor: str,
    verbose: int | str,
) -> Any:
    """Trains a fresh model on all rows for the best epoch count."""
    import keras

    from tffm.encoder import FeatureEncoder

    scores = np.asarray(history[monitor])
    best = int(
        np.argmax(scores) if monitor.endswith("auc") else np.argmin(scores)
    )
    rates = [float(r) for r in history["learning_rate"]]
    model = build_model(config, features)
    everything = FeatureEncoder(features).map_dataset(
        open_source(config, config.data, training=True).dataset
    )
    model.fit(
        everything,
        epochs=best + 1,
        callbacks=[keras.callbacks.LearningRateScheduler(lambda e: rates[e])],
        verbose=verbose,
    )
    return model


def predict_dataset(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and model outputs over an encoded `(features, label)` dataset."""
    labels, outputs = [], []
    for features, y in dataset:
        outputs.append(np.asarray(model(features, training=False))[:, 0])
        labels.append(np.asarray(y))
    return np.concatenate(labels), np.concatenate(outputs)


def evaluate_predictions(
    labels: np.ndarray, predictions: np.ndarray, task: str
) -> dict[str, float]:
    """AUC / logloss (binary) or RMSE / MAE (regression), with bootstrap std."""
    from tffm import metrics as m

    if task == "binary":
        fns = {"auc": m.roc_auc, "logloss": m.log_loss}
    else:
        fns = {"rmse": m.rmse, "mae": m.mae}
    out: dict[str, float] = {"rows": float(len(labels))}
    for name, fn in fns.items():
        out[name] = fn(labels, predictions)
        out[f"{name}_std"] = m.bootstrap_std(fn, labels, predictions)
    return out


def _write_outputs(
    output: str,
    config: TrainConfig,
    features: list[Feature],
    history: Mapping[str, list[float]],
    metrics: Mapping[str, float],
) -> None:
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    vocab_dir = os.path.join(output, "vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    for feature in features:
        if isinstance(feature, Categorical) and feature.vocabulary:
            with open(os.path.join(vocab_dir, f"{feature.name}.txt"), "w") as f:
                f.write("".join(f"{v}\n" for v in feature.vocabulary))
    with open(os.path.join(output, "history.json"), "w") as f:
        json.dump({k: [float(x) for x in v] for k, v in history.items()}, f)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(dict(metrics), f, indent=2)
