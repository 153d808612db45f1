"""The parts of a `TrainConfig` each step of training takes.

`TrainConfig` is the one source of the options (flags, files, checks); its
`model_options()` and `fit_options()` hand the model factory and the fit
only what they read, and `TrainConfig.layout` hands the readers theirs
(`tffm.data.DataLayout`). Plain Python, fully resolved: no `AUTO` left.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """What `tffm.train.build_model` builds and compiles.

    Attributes:
        model: `"fm"`, `"deepfm"` or `"lr"`.
        task: `"binary"` or `"regression"`.
        embedding_dim: factors per feature value (0 for LR).
        hidden_units: the DeepFM's DNN widths.
        dropout: the DNN's dropout rate.
        batch_norm: batch normalization in the DNN.
        embeddings_l2: L2 on the embedding rows a batch reads.
        table_l2: L2 on the whole embedding table each step.
        linear_l2: L2 on the linear weights of the rows a batch reads.
        kernel_l2: L2 on the DNN's kernels.
        precision: the dtype policy (`"float32"` or `"mixed_bfloat16"`).
        learning_rate: Adam's learning rate (scaled for the replicas).
        ema: momentum of the weights' moving average (0: none).
        seed: seed of the initialization.
    """

    model: str
    task: str
    embedding_dim: int
    hidden_units: tuple[int, ...]
    dropout: float
    batch_norm: bool
    embeddings_l2: float
    table_l2: float
    linear_l2: float
    kernel_l2: float
    precision: str
    learning_rate: float
    ema: float
    seed: int


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """What the fit, its callbacks and what follows it read.

    Attributes:
        task: `"binary"` or `"regression"`.
        monitor: the validation metric the schedule, early stopping and
            checkpoints watch (`val_auc`, `val_auc_logloss`, `val_rmse`,
            `val_logloss`, `val_loss`).
        epochs: most epochs.
        patience: epochs without improvement, after warm-up, before stopping.
        schedule: `"constant"`, `"plateau"` or `"cosine"`.
        warmup_epochs: epochs before the schedule or early stopping act.
        decay_patience: the plateau schedule's flat epochs before a decay.
        decay_factor: the plateau schedule's rate multiplier.
        learning_rate: the starting rate (the cosine schedule's).
        ema: momentum of the weights' moving average (0: none).
        precise_bn: recompute batch-norm statistics after training.
        calibrate: fit Platt scaling on the validation rows (binary).
        refit: retrain on every training row for the best epoch count.
        resume: resume a killed run from its checkpoint.
        checkpoint_every: steps between resume checkpoints (0: epoch ends).
    """

    task: str
    monitor: str
    epochs: int
    patience: int
    schedule: str
    warmup_epochs: int
    decay_patience: int
    decay_factor: float
    learning_rate: float
    ema: float
    precise_bn: bool
    calibrate: bool
    refit: bool
    resume: bool
    checkpoint_every: int
