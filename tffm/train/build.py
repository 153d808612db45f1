"""The feature spec from a scan, and the compiled model from its options."""

from typing import Any

from tffm.data.layout import DataLayout
from tffm.features import Categorical
from tffm.features import Feature
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.train.options import ModelOptions


def build_features(layout: DataLayout, scan: Any) -> list[Feature]:
    """The feature spec: vocabularies and numeric statistics from `scan`.

    Args:
        layout: the `DataLayout` of the scanned data (each column's kind
            and options).
        scan: a `tffm.data.vocab.Scan` or a scan folder's `FolderScan`.
    """
    features: list[Feature] = []
    for name, kind in layout.kinds().items():
        opts = layout.column_options(name)
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
                name, **layout.vocabulary_options(name)
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


def build_model(options: ModelOptions, features: list[Feature]) -> Any:
    """A compiled FM / DeepFM / logistic regression, seeded by `options`.

    Compiled with tffm's Adam (`tffm.optimizers`, with the weights' moving
    average when `options.ema`), the task's loss, and the metrics the
    monitors read (`tffm.train.callbacks.compile_metrics`).
    """
    import keras  # deferred: Keras

    from tffm import optimizers  # deferred: Keras
    from tffm.models import FM  # deferred: Keras
    from tffm.models import DeepFM
    from tffm.train.callbacks import compile_metrics  # deferred: Keras

    keras.utils.set_random_seed(options.seed)
    if options.model == "deepfm":
        model = DeepFM(
            features,
            embedding_dim=options.embedding_dim,
            hidden_units=list(options.hidden_units),
            dropout=options.dropout,
            batch_norm=options.batch_norm,
            embeddings_l2=options.embeddings_l2,
            table_l2=options.table_l2,
            linear_l2=options.linear_l2,
            kernel_l2=options.kernel_l2,
            task=options.task,
            dtype=options.precision,
        )
    else:
        model = FM(
            features,
            embedding_dim=options.embedding_dim,
            embeddings_l2=options.embeddings_l2,
            table_l2=options.table_l2,
            linear_l2=options.linear_l2,
            task=options.task,
            dtype=options.precision,
        )
    binary = options.task == "binary"
    model.compile(
        optimizer=optimizers.Adam(
            options.learning_rate,
            use_ema=bool(options.ema),
            ema_momentum=options.ema or 0.99,
        ),
        loss="binary_crossentropy" if binary else "mean_squared_error",
        metrics=compile_metrics(options.task),
    )
    return model
