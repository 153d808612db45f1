"""The README's quick start runs as written."""

import pathlib
import re

import keras
import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="uses tf.constant"
)
def test_quick_start_runs():
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README quick start", "exec"), namespace)  # noqa: S102
    assert namespace["serving_model"].outputs[0].shape == (None, 1)
