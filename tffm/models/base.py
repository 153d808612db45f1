"""The base of tffm's functional models: inputs, output head and config."""

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import keras

from tffm import constants
from tffm import optimizers  # registers tffm's optimizers for loading
from tffm.features import Feature
from tffm.features import Numeric
from tffm.features import deserialize_feature
from tffm.features import serialize_feature
from tffm.layers.calibration import LogitCalibration

_logger = logging.getLogger("tffm.models")


class FactorizationModel(keras.Model):
    """What `FM` and `DeepFM` share, as keras-hub's `Backbone` does.

    A subclass builds its functional graph in `__init__` (with
    `feature_inputs` and `output_head`), calls `super().__init__(inputs,
    outputs, ...)`, then stores each constructor argument as the attribute
    of the same name: `get_config` reads them back by the constructor's
    signature, so it never drifts from `__init__`, and `from_config` is
    `cls(**config)`. `dtype` (a dtype policy such as `"mixed_bfloat16"`)
    is part of the config.

    Attributes:
        device_fit: bool. Whether `fit` on the JAX backend may keep the
            rows on the device (True by default; see `fit`).
    """

    device_fit = True

    def __init__(
        self,
        inputs: Any,
        outputs: Any,
        *,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
        # A functional model keeps no policy of its own (its layers do):
        # remember the one its layers were built with, for the config.
        self.layers_dtype_policy = keras.dtype_policies.get(
            dtype if dtype is not None else keras.config.dtype_policy()
        )

    def compile(
        self,
        optimizer: Any = "adam",
        *args: Any,
        jit_compile: Any = "auto",
        **kwargs: Any,
    ) -> None:
        """`keras.Model.compile`, with what tffm's tables need by default.

        `optimizer="adam"` / `"adagrad"` (the strings) mean
        `tffm.optimizers.Adam` / `Adagrad`: Keras' algorithms with the
        embedding gradient summed per row once, and row-wise updates for
        tables of a million rows or more (see `tffm.optimizers`). Pass an
        optimizer object to choose otherwise. `jit_compile="auto"` on the
        TensorFlow backend compiles the step with XLA (Keras' "auto" leaves
        it off there on CPU; XLA saves a fifth of a DeepFM step), except
        when a table updates row-wise (XLA has no `Unique`).
        """
        optimizer = optimizers.get(optimizer)
        if jit_compile == "auto" and keras.backend.backend() == "tensorflow":
            jit_compile = not optimizers.lazy_variables(
                optimizer, self.trainable_variables
            )
        super().compile(optimizer, *args, jit_compile=jit_compile, **kwargs)
        self.__dict__.pop("_tffm_device_calls", None)  # compiled for the old

    def fit(  # noqa: D417 (the arguments are Keras')
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: Any = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: Any = 1,
        *,
        order: Any = None,
    ) -> Any:
        """`keras.Model.fit`, with the rows kept on the device on JAX.

        On the JAX backend, arrays (numpy or JAX; or a
        `tffm.train.device_fit.DeviceRows`) that fit in the device's memory
        are copied there once, shuffled there each epoch, and trained on
        several steps per compiled call, with Keras' callbacks, history,
        validation and weights (`tffm.train.device_fit`, which says when
        Keras' own `fit` runs instead). Set `device_fit = False` on the
        model to always run Keras' `fit`. Other backends run Keras' `fit`.

        Args:
            order: a `tffm.train.device_fit.DeviceOrder` (the shuffle seed,
                and the position a resumed epoch starts at), or None.
            (the others): as `keras.Model.fit`.
        """
        options = dict(
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
        )
        if self.device_fit and keras.backend.backend() == "jax":
            from tffm.train import device_fit  # deferred: imports JAX

            why = device_fit.takes_device_path(
                self,
                x,
                y,
                validation_data,
                shuffle=shuffle,
                steps_per_epoch=steps_per_epoch,
                validation_steps=validation_steps,
            )
            if why is None:
                return device_fit.fit_on_device(
                    self, x, y, order=order, **options
                )
            if isinstance(x, device_fit.DeviceRows):
                raise ValueError(
                    f"`x` is `DeviceRows`, which only the device path takes, "
                    f"but it cannot run: {why}."
                )
            _logger.debug("model.fit runs Keras' fit: %s", why)
        return super().fit(
            x,
            y,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            **options,
        )

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Recompiles a loaded model with its saved compile arguments.

        (Keras skips models whose `compile` is overridden unless they say
        how; the saved config holds exactly `compile`'s arguments.)
        """
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:  # create the optimizer's slots, as Keras does
            self.optimizer.build(self.trainable_variables)

    # === Config ===
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.layers_dtype_policy),
        }
        for name, parameter in inspect.signature(type(self)).parameters.items():
            if name in config or parameter.kind in (
                parameter.VAR_KEYWORD,
                parameter.VAR_POSITIONAL,
            ):
                continue
            value = getattr(self, name)
            if name == "features" and value is not None:
                value = [serialize_feature(f) for f in value]
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FactorizationModel":
        config = dict(config)
        if config.get("features") is not None:
            config["features"] = [
                deserialize_feature(f) for f in config["features"]
            ]
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def load_model(path: str, **kwargs: Any) -> keras.Model:
    """`keras.saving.load_model` with tffm's classes registered.

    Args:
        path: str. A `.keras` file saved from a tffm model (or any Keras
            model using tffm layers).
        **kwargs: passed to `keras.saving.load_model` (`compile`,
            `safe_mode`, `custom_objects`).
    """
    return keras.saving.load_model(path, **kwargs)


def feature_inputs(features: Sequence[Feature]) -> dict[str, keras.KerasTensor]:
    """Returns one `keras.Input` per feature, named by the feature.

    Encoded form: int32 ids `(batch_size,)` for `Categorical`, int32 ids
    `(batch_size, list_length)` for `MultiCategorical`, float32 values
    `(batch_size,)` for `Numeric`.
    """
    return {
        f.name: keras.Input(
            shape=f.shape,
            dtype=f.encoded_dtype,
            name=f.name,
        )
        for f in features
    }


def numeric_fields(features: Sequence[Feature]) -> list[int]:
    """Indices of the numeric features: fields whose vectors may dominate."""
    return [i for i, f in enumerate(features) if isinstance(f, Numeric)]


def validate_task(task: str) -> None:
    """Fails unless `task` is one of `tffm.constants.TASKS`."""
    if task not in constants.TASKS:
        raise ValueError(
            f"`task` must be one of {constants.TASKS}. Received: task={task!r}"
        )


def output_head(
    logit_parts: list[keras.KerasTensor], task: str
) -> keras.KerasTensor:
    """Sums the logit parts into `logit` and applies the task's link.

    Binary models pass the sum through `LogitCalibration` (Platt scaling,
    the identity until fitted on held-out rows) before the sigmoid; the
    layer named `logit` is the calibrated one, so `probability =
    sigmoid(logit)` always holds. The head computes in float32 whatever the
    model's dtype policy, so probabilities and losses keep full precision
    under mixed precision.
    """
    binary = task == "binary"
    name = "raw_logit" if binary else constants.LOGIT
    if len(logit_parts) == 1:
        logit = keras.layers.Identity(name=name, dtype="float32")(
            logit_parts[0]
        )
    else:
        logit = keras.layers.Add(name=name, dtype="float32")(
            logit_parts
        )  # (B, 1)
    if binary:
        logit = LogitCalibration(name=constants.LOGIT, dtype="float32")(logit)
        return keras.layers.Activation(
            "sigmoid", name=constants.PROBABILITY, dtype="float32"
        )(logit)
    return keras.layers.Identity(name=constants.PREDICTION, dtype="float32")(
        logit
    )
