"""Exported artifacts compute in float32, whatever the training policy."""

from typing import Any


def float32_model(model: Any) -> Any:
    """`model`, or its float32 twin when it was built mixed-precision.

    A `mixed_bfloat16` model keeps float32 weights and computes in bf16 to
    train faster; onnxruntime's CPU kernels have no bf16 (tf2onnx's graph
    fails to load), and serving is better served by float32 anyway. The
    twin has the same config but `dtype="float32"` and the same weights,
    so its outputs differ from the bf16 model's only by bf16 rounding; the
    exports and their parity check use it.
    """
    policy = getattr(model, "layers_dtype_policy", model.dtype_policy)
    if policy.name == "float32":
        return model
    config = model.get_config()
    config["dtype"] = "float32"
    twin = type(model).from_config(config)
    twin.set_weights(model.get_weights())
    return twin
