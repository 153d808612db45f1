"""Test helpers: a TestCase, named tolerances, a layer-test harness.

Everything here runs under the TensorFlow, JAX and torch backends.
"""

import contextlib
import os
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from absl.testing import parameterized

# (atol, rtol) pairs, each named for the comparison it bounds.
FP32 = (1e-6, 1e-6)  # same-backend identities, .keras / SavedModel reloads
FP64 = (1e-12, 1e-12)  # float64 layer vs float64 brute-force reference
# float32 FM interaction vs float64 reference on small unit-scale inputs
# (F <= 10, D <= 8): mixed-sign sums cancel, so error grows with sum |v|.
FM_TRICK = (1e-5, 1e-5)
ORT = (1e-5, 1e-5)  # ONNX Runtime CPU vs Keras


def to_numpy(x: Any) -> Any:
    """A backend tensor, Keras variable or nested structure as numpy."""
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(to_numpy(v) for v in x)
    if isinstance(x, keras.Variable):
        x = x.value
    if isinstance(x, np.ndarray | np.generic | int | float):
        return np.asarray(x)
    return keras.ops.convert_to_numpy(x)


class TestCase(parameterized.TestCase):
    """`parameterized.TestCase` seeded like every tffm test."""

    def setUp(self) -> None:
        super().setUp()
        keras.utils.set_random_seed(0)
        self.rng = np.random.default_rng(0)

    def assertAllClose(
        self,
        actual: Any,
        expected: Any,
        tol: tuple[float, float] = FP32,
        msg: str = "",
    ) -> None:
        atol, rtol = tol
        np.testing.assert_allclose(
            to_numpy(actual),
            to_numpy(expected),
            atol=atol,
            rtol=rtol,
            err_msg=msg,
        )

    def assertAllEqual(self, actual: Any, expected: Any, msg: str = "") -> None:
        np.testing.assert_array_equal(
            to_numpy(actual), to_numpy(expected), err_msg=msg
        )

    def run_layer_test(
        self,
        layer_cls: type[keras.layers.Layer],
        init_kwargs: Mapping[str, Any],
        inputs: Any,
        expected_output_shape: Any,
        *,
        expect_trainable_weights: int,
        call_args: int = 1,
    ) -> keras.layers.Layer:
        """What every tffm layer must do, as Keras' `run_layer_test` checks.

        1. Builds on `inputs`, gives `expected_output_shape` (a shape or a
           tuple of shapes), agrees with `compute_output_shape`, and has
           `expect_trainable_weights` trainable weights.
        2. Config round trip: `from_config(get_config())` has the same
           config.
        3. `.keras` round trip inside a functional model, loaded with
           `safe_mode=True`: same outputs (`FP32`).
        4. One training step (`model.fit`, SGD) on every output moves every
           trainable weight and gives a finite loss.

        Args:
            layer_cls: the layer class.
            init_kwargs: constructor arguments.
            inputs: numpy input (an array, a dict, or a tuple of arrays when
                `call_args > 1`).
            expected_output_shape: the output shape(s).
            expect_trainable_weights: int. Number of trainable weights.
            call_args: int. Positional arguments `call` takes (`inputs` is
                then a tuple of that many arrays).

        Returns:
            The built layer.
        """
        args = tuple(inputs) if call_args > 1 else (inputs,)
        layer = layer_cls(**init_kwargs)
        outputs = layer(*args)
        shapes = _shapes(outputs)
        self.assertEqual(shapes, _normalize(expected_output_shape))
        input_shapes = [_shapes(a) for a in args]
        declared = layer.compute_output_shape(*input_shapes)
        self.assertEqual(
            _normalize(declared, batch=None), _normalize(shapes, batch=None)
        )
        self.assertEqual(len(layer.trainable_weights), expect_trainable_weights)

        # 2. Config round trip.
        config = layer.get_config()
        self.assertEqual(layer_cls.from_config(config).get_config(), config)

        # 3. .keras round trip under safe_mode.
        symbolic = tuple(_symbolic(a) for a in args)
        model = keras.Model(
            symbolic if call_args > 1 else symbolic[0],
            _as_list(layer_cls(**init_kwargs)(*symbolic)),
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "layer.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        feed = list(args) if call_args > 1 else args[0]
        for got, want in zip(
            _as_outputs(loaded.predict_on_batch(feed)),
            _as_outputs(model.predict_on_batch(feed)),
            strict=True,
        ):
            self.assertAllClose(got, want)

        # 4. A training step moves every trainable weight.
        if expect_trainable_weights:
            targets = [np.zeros(s, "float32") for s in _shapes_list(outputs)]
            before = [to_numpy(w).copy() for w in model.trainable_weights]
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            history = model.fit(feed, targets, epochs=1, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))
            for weight, old in zip(
                model.trainable_weights, before, strict=True
            ):
                self.assertFalse(
                    np.array_equal(to_numpy(weight), old),
                    f"training did not move {weight.path}",
                )
        return layer


@contextlib.contextmanager
def float64_enabled() -> Iterator[None]:
    """Lets the active backend compute in float64 (JAX needs x64 on)."""
    if keras.backend.backend() == "jax":
        import jax  # deferred: JAX

        with jax.enable_x64(True):
            yield
    else:
        yield


def gradients(
    fn: Callable[..., Any], variables: list[Any], *args: Any
) -> list[np.ndarray]:
    """Gradients of `sum(fn(*args))` w.r.t. Keras variables, as numpy.

    TensorFlow: `GradientTape`; JAX: `jax.grad` over the variables' values
    via `StatelessScope`; torch: `torch.autograd.grad`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # deferred: TensorFlow

        with tf.GradientTape() as tape:
            total = keras.ops.sum(fn(*args))
        grads = tape.gradient(total, [v.value for v in variables])
        return [np.asarray(tf.convert_to_tensor(g)) for g in grads]
    if backend == "jax":
        import jax  # deferred: JAX

        def loss(values: list[Any]) -> Any:
            mapping = list(zip(variables, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return keras.ops.sum(fn(*args))

        grads = jax.grad(loss)([v.value for v in variables])
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch  # deferred: torch

        total = keras.ops.sum(fn(*args))
        grads = torch.autograd.grad(total, [v.value for v in variables])
        return [g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(f"gradients() does not support {backend!r}")


def fused_table(layer: Any) -> np.ndarray:
    """A `FeatureEmbedding`'s rows as one float64 `(num_rows, D + 1)` array.

    Columns `[:D]` are the embeddings, the last the linear weight: the
    layout tests index with a field's row offset.
    """
    weights: np.ndarray = to_numpy(layer.linear_weights).astype(np.float64)
    weights = weights[:, None]
    if layer.embeddings is None:
        return weights
    embeddings = to_numpy(layer.embeddings).astype(np.float64)
    fused: np.ndarray = np.concatenate([embeddings, weights], axis=1)
    return fused


def _symbolic(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _symbolic(v) for k, v in x.items()}
    x = np.asarray(x)
    return keras.Input(shape=x.shape[1:], dtype=str(x.dtype))


def _as_outputs(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _as_list(outputs: Any) -> Any:
    return list(outputs) if isinstance(outputs, tuple) else outputs


def _shapes_list(outputs: Any) -> list[tuple[int, ...]]:
    shapes = _shapes(outputs)
    return list(shapes) if isinstance(shapes[0], tuple) else [shapes]


def _shapes(x: Any) -> Any:
    """Shape of a tensor / array, a tuple of shapes, or a dict of shapes."""
    if isinstance(x, dict):
        return {k: _shapes(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return tuple(_shapes(v) for v in x)
    return tuple(int(d) for d in x.shape)


def _normalize(shape: Any, batch: Any = "keep") -> Any:
    """Shapes as tuples; with `batch=None` the batch dimension dropped."""
    if isinstance(shape, dict):
        return {k: _normalize(v, batch) for k, v in shape.items()}
    if (
        isinstance(shape, list | tuple)
        and shape
        and isinstance(shape[0], list | tuple)
    ):
        return tuple(_normalize(s, batch) for s in shape)
    shape = tuple(shape)
    return shape if batch == "keep" else shape[1:]
