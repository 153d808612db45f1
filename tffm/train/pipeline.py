"""From data files to a saved model: `train`.

One way down: the config's layout reads the data (`inputs`), the plan says
where the fits run (`distribute`), `fit.fit_model` makes the first fit and
the refit alike, then the model is scored, calibrated and written
(`outputs`). Each step takes the part of the config it reads.
"""

import dataclasses
import logging
import os
from typing import Any

from tffm.data.lines import raise_row_errors
from tffm.features import Feature
from tffm.features import table_rows
from tffm.train import distribute
from tffm.train.calibration import calibrate
from tffm.train.callbacks import fit_callbacks
from tffm.train.config import TrainConfig
from tffm.train.encode import trained_on_encoding
from tffm.train.evaluation import evaluate_dataset
from tffm.train.fit import best_epochs
from tffm.train.fit import checkpoint_path
from tffm.train.fit import fit_model
from tffm.train.fit import replayed_rates
from tffm.train.fit import resume_checkpoint
from tffm.train.inputs import TrainingData
from tffm.train.inputs import open_encoded
from tffm.train.inputs import open_raw
from tffm.train.inputs import resolve_layout
from tffm.train.linear_guard import describe
from tffm.train.linear_guard import linear_guard
from tffm.train.options import FitOptions
from tffm.train.outputs import MODEL_FILE
from tffm.train.outputs import write_outputs
from tffm.train.precise_bn import has_batch_norm
from tffm.train.precise_bn import recompute_batch_norm
from tffm.train.resume import ResumeCheckpoint

logger = logging.getLogger(__name__)


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
    Progress goes to the `tffm` logger.
    """
    if not config.data:
        raise ValueError("No training data: set `data` (or --data).")
    config = resolve_layout(config)
    # First: multi-worker collectives must be set up before any TF op.
    plan = distribute.plan(
        config.distribution,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        batch_scaling=config.batch_scaling,
        data_format=config.format,
    )
    if plan.serves:  # a parameter-server cluster's worker or ps task
        return TrainResult(None, [], {}, output, plan.serve())
    if (
        plan.num_replicas > 1
        or config.batch_scaling != "global"
        or plan.distribution == "parameter-server"
    ):
        logger.info("%s", plan.note)
    output = plan.output_folder(output)
    os.makedirs(output, exist_ok=True)
    with raise_row_errors():
        data = _open_data(config, output)
        plan.check(data.features)
        config = config.for_data(
            training_rows=data.rows, table_rows=table_rows(data.features)
        )
        # What `config.json` records: encoded data keeps its encoding's
        # reading options (checked before any training).
        recorded = (
            trained_on_encoding(config)
            if config.format == "encoded"
            else config
        )
        return _fit_and_save(config, recorded, plan, data, output, verbose)


def _open_data(config: TrainConfig, output: str) -> TrainingData:
    """The run's `TrainingData`; a scan of raw data is written to `output`."""
    if config.format == "encoded":
        if len(config.data) != 1:
            raise ValueError(
                "format='encoded' takes one folder written by `tffm encode` "
                f"as `data`. Received: data={config.data!r}"
            )
        return open_encoded(
            config.data[0],
            batch_size=config.batch_size,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
        )
    return open_raw(
        config.layout,
        config.data,
        config.validation_data,
        batch_size=config.batch_size,
        shuffle_buffer=config.shuffle_buffer,
        seed=config.seed,
        scan=config.scan,
        output=output,
    )


def _fit_and_save(
    config: TrainConfig,
    recorded: TrainConfig,
    plan: distribute.Plan,
    data: TrainingData,
    output: str,
    verbose: int | str,
) -> TrainResult:
    """Fits (and refits), scores, calibrates and saves."""
    options = config.fit_options()
    model_options = config.model_options(learning_rate=plan.learning_rate)
    dataset, order = data.training_input(plan)
    checkpoint = resume_checkpoint(
        os.path.join(output, "backup"), options, plan, order
    )
    if options.resume and checkpoint.state() is not None:
        logger.info("%s", checkpoint.describe(options.epochs))
    model, history = fit_model(
        model_options,
        data.features,
        plan,
        dataset,
        checkpoint=checkpoint,
        epochs=options.epochs,
        callbacks=fit_callbacks(
            options,
            checkpoint=checkpoint_path(output, refit=options.refit),
            logs=output,
        ),
        validation=data.validation_input(dataset),
        verbose=verbose,
    )
    metrics = _score(model, options, plan, data)
    # The chosen epoch's model against a linear one, on the same rows.
    guard = _guard(model, config, plan, data)
    if options.refit:
        selection = dict(metrics, epochs=len(history["loss"]))
        epochs = best_epochs(history, options.monitor)
        if verbose:
            logger.info(
                "refit: a fresh model on every training row, the holdout "
                "included, for the best epoch count (%d; --no-refit skips it)",
                epochs,
            )
        dataset, order = data.training_input(plan, with_holdout=True)
        selected = model
        model, _ = fit_model(
            model_options,
            data.features,
            plan,
            dataset,
            checkpoint=resume_checkpoint(
                os.path.join(output, "backup", "refit"), options, plan, order
            ),
            epochs=epochs,
            callbacks=[replayed_rates(history)],
            verbose=verbose,
        )
        metrics = _score_refit(model, selected, options, plan, data)
        metrics.update(refit_epochs=epochs, selection=selection)
        if options.calibrate:
            metrics["calibration_fit"] = dict(
                selection["calibration_fit"],
                fitted_on="holdout, by the selection model",
            )
    if guard is not None:
        metrics["linear_baseline"] = guard
    if config.lenient and data.scan_log is not None:
        # The scan read each training row once; the validation rows are
        # cached, so each was read once too.
        metrics["skipped_rows"] = {
            "training": data.scan_log.summary(),
            "validation": data.validation_log.summary()
            if data.validation_log is not None
            else None,
        }
    model.save(os.path.join(output, MODEL_FILE))
    write_outputs(output, recorded, data.features, history, metrics)
    # The run is saved: a new command starts afresh.
    ResumeCheckpoint(os.path.join(output, "backup", "refit")).clear()
    checkpoint.clear()
    if guard is not None and guard["below"]:
        logger.warning("%s", describe(guard))
    return TrainResult(model, data.features, history, output, metrics)


def _guard(
    model: Any, config: TrainConfig, plan: distribute.Plan, data: TrainingData
) -> dict[str, Any] | None:
    """The linear model's record (`tffm.train.linear_guard`), or None.

    None when `linear_guard` is off, or when this process does not read
    all the training data (several workers, a parameter server).
    """
    if not config.linear_guard or plan.distribution in (
        "multi-worker",
        "parameter-server",
    ):
        return None
    return linear_guard(
        model,
        data.features,
        config.task,
        data.local_input(config.batch_size),
        data.validation,
        model_name=config.model,
    )


def _score(
    model: Any, options: FitOptions, plan: distribute.Plan, data: TrainingData
) -> dict[str, Any]:
    """The chosen model's validation metrics, after precise BN and Platt."""
    statistics = _batch_norm_statistics(model, options, plan, data)
    metrics: dict[str, Any] = dict(
        evaluate_dataset(model, data.validation, options.task)
    )
    metrics["evaluated_on"] = data.evaluated_on
    if statistics is not None:
        metrics["batch_norm_statistics"] = statistics
    if options.calibrate:  # on rows the model did not train on
        before = {k: metrics[k] for k in ("logloss", "ece") if k in metrics}
        parameters = calibrate(model, data.validation)
        metrics.update(evaluate_dataset(model, data.validation, options.task))
        metrics["calibration_fit"] = dict(
            parameters,
            fitted_on=metrics["evaluated_on"],
            **{f"{k}_before": v for k, v in before.items()},
        )
    return metrics


def _score_refit(
    model: Any,
    selected: Any,
    options: FitOptions,
    plan: distribute.Plan,
    data: TrainingData,
) -> dict[str, Any]:
    """The refit model's metrics; it takes the selected model's Platt fit.

    The refit model trained on the holdout, where it would look calibrated
    already: the selection model's fit (same recipe and epochs, 10% fewer
    rows) is copied instead.
    """
    statistics = _batch_norm_statistics(model, options, plan, data)
    if options.calibrate:
        for name in ("scale", "shift"):
            getattr(model.get_layer("logit"), name).assign(
                getattr(selected.get_layer("logit"), name)
            )
    metrics: dict[str, Any] = dict(
        evaluate_dataset(model, data.validation, options.task)
    )
    metrics["evaluated_on"] = (
        "holdout, which the refit model also trained on (optimistic)"
    )
    if statistics is not None:
        metrics["batch_norm_statistics"] = statistics
    return metrics


def _batch_norm_statistics(
    model: Any, options: FitOptions, plan: distribute.Plan, data: TrainingData
) -> str | None:
    """Precise BN (`options.precise_bn`): what was done, for metrics.json."""
    if not options.precise_bn or not has_batch_norm(model):
        return None
    if plan.num_replicas > 1 or plan.distribution == "parameter-server":
        # Replicas normalized their own parts of each batch.
        return "kept from training (distributed)"
    read = recompute_batch_norm(model, data.local_input(plan.batch_size))
    return f"recomputed from {read} training batches" if read else None
