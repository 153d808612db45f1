"""What an option left `AUTO` becomes: by task and model, then by the data.

Most options' defaults depend on the task and the model (`AUTO_DEFAULTS`)
and are filled in when a `TrainConfig` is made. Three depend on the data
as well and stay `AUTO` until it is scanned (`for_data`): the binary
DeepFM's `table_l2` goes by the rows of its embedding table, the weight
average's momentum (`ema`) by the steps in an epoch, and regression's
`refit` by the rows left to train on. The evidence behind every value is
in the documentation (`docs/defaults.md`).
"""

import copy
from typing import Any

from tffm.constants import LAZY_ROWS


class _Auto:
    """The value of an option whose default depends on the task and model.

    One object: copies and pickles of it are `AUTO` itself.
    """

    def __repr__(self) -> str:
        return "auto"

    def __copy__(self) -> "_Auto":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Auto":
        return self

    def __reduce__(self) -> str:
        return "AUTO"


# Typed `Any` so a field declared `int` may default to it.
AUTO: Any = _Auto()
# How `AUTO` is spelled in config files and on the command line.
AUTO_TEXT = "auto"

# The model `tffm train` builds unless told.
DEFAULT_MODEL = "fm"
# The whole-table L2 of a binary DeepFM whose table has under `LAZY_ROWS`
# rows (whose optimizer update then touches every row anyway).
TABLE_L2 = 1e-3
# The weight average's momentum on large data, by (task, model); on data
# with fewer steps an epoch, `ema_by_steps` shortens it to about one epoch.
EMA_MOMENTUM: dict[tuple[str, str], float] = {
    ("binary", "deepfm"): 0.995,
    ("regression", "fm"): 0.998,
}
# Regression refits when at most this many rows remain to train on.
REFIT_MAX_ROWS = 1_000_000

# Under the task's and the (task, model)'s entries below.
_COMMON_DEFAULTS: dict[str, Any] = {
    "embedding_dim": 16,
    "hidden_units": [400, 400],
    "dropout": 0.5,
    "batch_norm": True,
    "batch_size": 512,
    "epochs": 40,
    "patience": 4,
    "min_frequency": 1,
    "ema": 0.0,
    "table_l2": 0.0,
}
# `AUTO` in these tables: decided by the data (`for_data`).
_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "binary": {"schedule": "plateau", "refit": False, "monitor": "val_auc"},
    "regression": {
        "schedule": "constant",
        "refit": AUTO,
        "monitor": "val_rmse",
    },
}
AUTO_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("binary", "deepfm"): {
        "embeddings_l2": 0.01,
        "learning_rate": 1e-3,
        "ema": AUTO,
        "table_l2": AUTO,
    },
    ("binary", "fm"): {
        "embeddings_l2": 0.01,
        "learning_rate": 5e-3,
        "min_frequency": 3,
        "monitor": "val_auc_logloss",
    },
    ("binary", "lr"): {"embeddings_l2": 0.0, "learning_rate": 1e-2},
    ("regression", "deepfm"): {
        "embedding_dim": 32,
        "embeddings_l2": 0.03,
        "learning_rate": 3e-3,
    },
    ("regression", "fm"): {
        "embedding_dim": 64,
        "embeddings_l2": 0.1,
        "linear_l2": 0.0,
        "learning_rate": 2e-3,
        "batch_size": 128,
        "ema": AUTO,
        "epochs": 100,
    },
    ("regression", "lr"): {"embeddings_l2": 0.0, "learning_rate": 3e-3},
}
# A parameter-server cluster steps asynchronously (no one step to average
# the weights at) and shards its tables to be large.
_PARAMETER_SERVER_DEFAULTS: dict[str, Any] = {"ema": 0.0, "table_l2": 0.0}


def auto_defaults(
    task: str, model: str, *, distribution: str = "none"
) -> dict[str, Any]:
    """The values `AUTO` options take for `task`, `model`, `distribution`.

    `linear_l2` is `embeddings_l2`'s unless the model's entry sets it;
    `table_l2` and `refit` may be `AUTO` still (see `for_data`).
    """
    values = {
        **_COMMON_DEFAULTS,
        **_TASK_DEFAULTS[task],
        **AUTO_DEFAULTS[(task, model)],
    }
    if distribution == "parameter-server":
        values.update(_PARAMETER_SERVER_DEFAULTS)
    values.setdefault("linear_l2", values["embeddings_l2"])
    return copy.deepcopy(values)


def table_l2_by_size(table_rows: int) -> float:
    """An `AUTO` `table_l2`: `TABLE_L2` under `LAZY_ROWS` table rows, else 0.

    A larger table keeps its row-wise updates (`tffm.optimizers`), which an
    L2 on every row each step would undo.
    """
    return TABLE_L2 if table_rows < LAZY_ROWS else 0.0


def ema_by_steps(task: str, model: str, steps_per_epoch: int) -> float:
    """An `AUTO` `ema`: `1 - 1 / steps_per_epoch`, at most `EMA_MOMENTUM`.

    A momentum `m` averages over about `1 / (1 - m)` steps. On few rows an
    epoch is a few steps, and an average over hundreds of them trails the
    weights by many epochs: early stopping then judges weights from long
    ago. Capped at about one epoch, the average keeps up; on large data
    (at least `1 / (1 - EMA_MOMENTUM)` steps an epoch) it is the model's
    `EMA_MOMENTUM`. 0 for models that average no weights.
    """
    cap = EMA_MOMENTUM.get((task, model), 0.0)
    if not cap:
        return 0.0
    return min(cap, 1.0 - 1.0 / max(steps_per_epoch, 2))


def refit_by_rows(training_rows: int, *, holdout: bool) -> bool:
    """An `AUTO` `refit`: on when the holdout was cut from the data.

    And when at most `REFIT_MAX_ROWS` rows remain to train on, where a
    second fit costs minutes.
    """
    return holdout and training_rows <= REFIT_MAX_ROWS


# Options that files written before `"auto"` existed set to `null` when
# left to their default.
LEGACY_NULL = ("table_l2", "linear_l2", "refit", "monitor")


def legacy_null(name: str, task: str) -> Any:
    """What a `null` `name` in such a file means.

    `AUTO`, except the monitor: the task's own (`val_auc` for binary tasks),
    which is what it meant before the monitor went by the model too.
    """
    if name == "monitor" and task in _TASK_DEFAULTS:
        return _TASK_DEFAULTS[task]["monitor"]
    return AUTO
