"""Test helpers: a TestCase, named tolerances, backend-agnostic gradients."""

import contextlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from absl.testing import parameterized

# (atol, rtol) pairs. See STYLE.md section 6 for how each was measured.
FP32 = (1e-6, 1e-6)  # same-backend identities, .keras / SavedModel reloads
FP64 = (1e-12, 1e-12)  # float64 layer vs float64 brute-force reference
# float32 FM interaction vs float64 reference on small unit-scale inputs
# (F <= 10, D <= 8): mixed-sign sums cancel, so error grows with sum |v|.
FM_TRICK = (1e-5, 1e-5)
ORT = (1e-5, 1e-5)  # ONNX Runtime CPU vs Keras


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
            np.asarray(actual),
            np.asarray(expected),
            atol=atol,
            rtol=rtol,
            err_msg=msg,
        )

    def assertAllEqual(self, actual: Any, expected: Any, msg: str = "") -> None:
        np.testing.assert_array_equal(
            np.asarray(actual), np.asarray(expected), err_msg=msg
        )


@contextlib.contextmanager
def float64_enabled() -> Iterator[None]:
    """Lets the active backend compute in float64 (JAX needs x64 on)."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def gradients(
    fn: Callable[..., Any], variables: list[Any], *args: Any
) -> list[np.ndarray]:
    """Gradients of `sum(fn(*args))` w.r.t. Keras variables, as numpy.

    Works on the TensorFlow backend (GradientTape) and the JAX backend
    (`jax.grad` over the variables' values via `StatelessScope`).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total = keras.ops.sum(fn(*args))
        grads = tape.gradient(total, [v.value for v in variables])
        return [np.asarray(tf.convert_to_tensor(g)) for g in grads]
    if backend == "jax":
        import jax

        def loss(values: list[Any]) -> Any:
            mapping = list(zip(variables, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return keras.ops.sum(fn(*args))

        grads = jax.grad(loss)([v.value for v in variables])
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(f"gradients() does not support {backend!r}")
