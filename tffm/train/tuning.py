"""`tffm tune`: a hyperparameter search on the holdout, with KerasTuner.

Every trial trains on the training part of `config.data` and is scored on
its holdout (every `holdout_every`-th line), or on `validation_data` when
given; no test file is ever read. The best trial's values, merged into the
config, are written as a file `tffm train --config` reads.
"""

import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from tffm import constants
from tffm.data.lines import raise_row_errors
from tffm.features import table_rows
from tffm.train.build import build_model
from tffm.train.callbacks import fit_callbacks
from tffm.train.callbacks import mode_of
from tffm.train.config import TrainConfig
from tffm.train.fit import quiet_fit
from tffm.train.inputs import open_raw
from tffm.train.inputs import resolve_layout
from tffm.train.outputs import written_config

logger = logging.getLogger(__name__)

ALGORITHMS = constants.TUNE_ALGORITHMS
# The search space: (name, kind, values) per hyperparameter; DeepFM adds
# its DNN's and the table's L2. Values are the config's own (hidden units
# as "400,400").
_L2 = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
_COMMON = (
    ("embedding_dim", "choice", (8, 16, 32, 64)),
    ("learning_rate", "log", (1e-4, 3e-2)),
    ("embeddings_l2", "choice", _L2),
    ("batch_size", "choice", (128, 256, 512, 1024, 2048)),
    ("ema", "choice", (0.0, 0.99, 0.995, 0.999)),
)
# The factorization models' linear weights take their own L2; LR's linear
# weights are its embeddings, which `embeddings_l2` already weighs.
_LINEAR = (("linear_l2", "choice", _L2),)
_DNN = (
    ("hidden_units", "choice", ("400,400,400", "256,128", "800,400", "128,64")),
    ("dropout", "choice", (0.0, 0.1, 0.3, 0.5)),
    ("batch_norm", "choice", (False, True)),
    ("kernel_l2", "choice", (0.0, 1e-5, 1e-4)),
)
# The DeepFM also searches the whole table's L2 each step, which holds rare
# ids near zero (every row then takes an update each step).
_TABLE = (("table_l2", "choice", (0.0, 1e-4, 1e-3, 3e-3, 1e-2)),)


@dataclasses.dataclass
class TuneResult:
    """The search's trials and the best config.

    `skipped_rows` (with `lenient`): what the readers skipped in the
    training and validation rows, as `tffm train` reports it.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any]
    best_config: str
    monitor: str
    skipped_rows: dict[str, Any] | None = None


def search_space(model: str) -> tuple[tuple[str, str, tuple[Any, ...]], ...]:
    """The hyperparameters `tffm tune` searches for `model`."""
    if model == "lr":
        return tuple(s for s in _COMMON if s[0] != "embedding_dim")
    return _COMMON + _LINEAR + (_DNN + _TABLE if model == "deepfm" else ())


def tune(
    config: TrainConfig,
    output: str,
    *,
    max_trials: int = constants.TUNE_MAX_TRIALS,
    time_budget: float | None = None,
    algorithm: str = "bayesian",
    report: Callable[[str], None] | None = None,
) -> TuneResult:
    """Searches `config`'s hyperparameters on its holdout.

    Args:
        config: the `TrainConfig`: data, model and every option not
            searched (`search_space(config.model)` lists those searched).
        output: str. Folder for the trials, `results.md`, `trials.jsonl`
            and `best_config.json`.
        max_trials: int. Most trials.
        time_budget: float. Seconds after which no new trial starts.
        algorithm: str. `"bayesian"` (default), `"random"` or
            `"hyperband"`.
        report: where each trial's line goes (default: the `tffm` logger).

    Returns:
        A `TuneResult`.
    """
    import keras  # deferred: Keras
    import keras_tuner  # optional: the `[tune]` extra

    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"`algorithm` must be one of {ALGORITHMS}. "
            f"Received: algorithm={algorithm!r}"
        )
    if not config.data:
        raise ValueError("No training data: set `data` (or --data).")
    config = resolve_layout(config)
    os.makedirs(output, exist_ok=True)
    monitor = config.monitor
    space = search_space(config.model)
    if config.distribution == "parameter-server":  # no weight average there
        space = tuple(s for s in space if s[0] != "ema")
    with raise_row_errors():  # the scan `tffm train` makes (or `scan`'s)
        data = open_raw(
            config.layout,
            config.data,
            config.validation_data,
            batch_size=config.batch_size,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            scan=config.scan,
        )
    features = data.features
    decided = config.for_data(
        training_rows=data.rows, table_rows=table_rows(features)
    )
    deadline = None if time_budget is None else time.monotonic() + time_budget
    say = report or logger.info

    def trial_config(hp: Any) -> TrainConfig:
        values = {name: _value(hp, name, kind, choices)
                  for name, kind, choices in space}  # fmt: skip
        if "hidden_units" in values:
            values["hidden_units"] = [
                int(u) for u in values["hidden_units"].split(",")
            ]
        return dataclasses.replace(decided, **values)

    class HyperModel(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: Any) -> Any:
            return build_model(trial_config(hp).model_options(), features)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            trial = trial_config(hp)
            callbacks = fit_callbacks(
                trial.fit_options(),
                checkpoint=os.path.join(output, "last_trial.keras"),
                logs=os.path.join(output, "last_trial"),
            )
            with raise_row_errors(), quiet_fit():
                return model.fit(
                    data.local_input(trial.batch_size),
                    validation_data=data.validation,
                    epochs=kwargs.get("epochs", trial.epochs),
                    callbacks=callbacks + list(kwargs.get("callbacks", [])),
                    verbose=0,
                    shuffle=False,
                )

    objective = keras_tuner.Objective(monitor, direction=mode_of(monitor))
    common = dict(
        objective=objective,
        directory=output,
        project_name="trials",
        overwrite=True,
        seed=config.seed,
    )
    base: Any = {
        "bayesian": keras_tuner.BayesianOptimization,
        "random": keras_tuner.RandomSearch,
        "hyperband": keras_tuner.Hyperband,
    }[algorithm]

    class Tuner(base):  # type: ignore[misc,valid-type]
        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            done = len(self.oracle.trials)
            score = trial.score
            shown = "failed" if score is None else f"{monitor} {score:.5f}"
            values = ", ".join(
                f"{k}={v}"
                for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")
            )
            say(f"trial {done}: {shown}  ({values})")
            if deadline is not None and time.monotonic() > deadline:
                self.oracle.max_trials = done  # no new trial starts

    if algorithm == "hyperband":
        tuner = Tuner(
            HyperModel(), max_epochs=config.epochs, factor=3, **common
        )
    else:
        tuner = Tuner(HyperModel(), max_trials=max_trials, **common)
    keras.utils.set_random_seed(config.seed)
    with warnings.catch_warnings():
        # The Bayesian oracle's Gaussian process warns on most trials once
        # a length scale reaches its bound: noise between the trial lines.
        warnings.filterwarnings(
            "ignore", message="The optimal value found for dimension"
        )
        tuner.search(epochs=config.epochs, verbose=0)
    trials = _trials(tuner, space, monitor)
    if not trials:
        raise ValueError("No trial finished; see the errors above.")
    best = trials[0]
    best_values = {k: best[k] for k, _, _ in space}
    if "hidden_units" in best_values:
        best_values["hidden_units"] = [
            int(u) for u in str(best_values["hidden_units"]).split(",")
        ]
    # Options not searched stay as given (`auto` ones go by the data then).
    best_config = written_config(
        dataclasses.replace(config, **best_values), features
    )
    path = os.path.join(output, "best_config.json")
    with open(path, "w") as f:
        json.dump(best_config, f, indent=2)
    with open(os.path.join(output, "trials.jsonl"), "w") as f:
        f.writelines(json.dumps(t) + "\n" for t in trials)
    with open(os.path.join(output, "results.md"), "w") as f:
        f.write(results_table(trials, space, monitor) + "\n")
    skipped = None
    if config.lenient:
        # Every trial reads the same rows: the scan's and the validation
        # reader's logs say what was skipped, once.
        skipped = {
            "training": None
            if data.scan_log is None
            else data.scan_log.summary(),
            "validation": None
            if data.validation_log is None
            else data.validation_log.summary(),
        }
    return TuneResult(trials, best, path, monitor, skipped)


def results_table(
    trials: list[dict[str, Any]],
    space: tuple[tuple[str, str, tuple[Any, ...]], ...],
    monitor: str,
) -> str:
    """The trials as a Markdown table, best first."""
    names = [name for name, _, _ in space]
    lines = [
        "| rank | " + " | ".join([monitor, *names]) + " |",
        "| ---: | " + " | ".join(["---:"] * (len(names) + 1)) + " |",
    ]
    for rank, trial in enumerate(trials, 1):
        cells = [f"{trial['score']:.5f}"] + [
            _show(trial[name]) for name in names
        ]
        lines.append(f"| {rank} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _value(hp: Any, name: str, kind: str, values: tuple[Any, ...]) -> Any:
    if kind == "log":
        return hp.Float(name, values[0], values[1], sampling="log")
    if all(isinstance(v, bool) for v in values):
        return hp.Boolean(name)  # `Choice` would turn booleans into 0 / 1
    return hp.Choice(name, list(values))


def _trials(
    tuner: Any,
    space: tuple[tuple[str, str, tuple[Any, ...]], ...],
    monitor: str,
) -> list[dict[str, Any]]:
    """Finished trials, best first: values and score."""
    finished = [t for t in tuner.oracle.trials.values() if t.score is not None]
    reverse = tuner.oracle.objective.direction == "max"
    finished.sort(key=lambda t: t.score, reverse=reverse)
    return [
        {
            "trial": t.trial_id,
            "score": float(t.score),
            **{name: t.hyperparameters.get(name) for name, _, _ in space},
        }
        for t in finished
    ]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
