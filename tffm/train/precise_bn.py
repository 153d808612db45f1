"""Batch-norm statistics recomputed for the final weights ("precise BN").

During training, a `BatchNormalization` layer keeps a moving average of the
statistics of its batches, taken while the weights moved and while dropout
was on. The model that is kept is none of those: it is the best epoch's
weights (or their moving average, `ema`), evaluated without dropout, so its
inference statistics are off by a shift that differs from run to run.
`recompute_batch_norm` takes them again from training batches, with the
final weights and dropout off. What that does to calibration is measured in
`docs/defaults.md` ("precise_bn").

References:
    - [Wu & Johnson, 2021](https://arxiv.org/abs/2105.07576), "Rethinking
      'Batch' in BatchNorm", section 3 ("precise BN").
"""

from collections.abc import Iterator
from typing import Any

import keras

# Batches whose statistics are averaged (Wu & Johnson: 10^4 samples or
# more give the population statistics; 100 batches of 512 is 51,200).
MAX_BATCHES = 100


def recompute_batch_norm(
    model: Any, dataset: Any, *, max_batches: int = MAX_BATCHES
) -> int:
    """Sets every batch-norm layer's statistics from `dataset`, in place.

    Each layer's moving mean and variance become the plain average over
    the batches of the batch means and (biased) variances of its inputs,
    computed with the model's current weights and every dropout layer off.
    Nothing else changes: the weights, and the dropout rates and momenta
    afterwards, are as they were.

    Args:
        model: a Keras model.
        dataset: iterable of `(features, ...)` batches of training rows.
        max_batches: int. Most batches to read.

    Returns:
        The number of batches read (0 when the model has no batch norm).
    """
    norms = [
        layer
        for layer in _layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not norms:
        return 0
    dropouts = [
        layer
        for layer in _layers(model)
        if isinstance(layer, keras.layers.Dropout)
    ]
    momenta = [layer.momentum for layer in norms]
    rates = [layer.rate for layer in dropouts]
    batches = 0
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for batch in dataset:
            if batches >= max_batches:
                break
            features = batch[0] if isinstance(batch, tuple | list) else batch
            for layer in norms:
                # k / (k + 1): the k-th batch gets weight 1 / (k + 1), so
                # the result is the equal-weight mean over the batches.
                layer.momentum = batches / (batches + 1.0)
            model(features, training=True)
            batches += 1
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate
    return batches


def has_batch_norm(model: Any) -> bool:
    """Whether `model` holds a batch-norm layer (a DeepFM's DNN may)."""
    return any(
        isinstance(layer, keras.layers.BatchNormalization)
        for layer in _layers(model)
    )


def _layers(layer: Any) -> Iterator[Any]:
    """`layer`'s sublayers, depth first (Keras tracks them as attributes)."""
    seen: set[int] = set()
    stack = list(getattr(layer, "layers", []))
    for name in ("blocks",):  # tffm.layers.MLP keeps its own list
        stack += list(getattr(layer, name, []))
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += list(getattr(current, "layers", []))
        stack += list(getattr(current, "blocks", []))
