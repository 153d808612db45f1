"""The README is a front page, and its quick start runs as written."""

import pathlib
import re

import keras
import numpy as np
import pytest

from tffm import testing
from tffm.cli import build_parser

README = pathlib.Path(__file__).parent.parent / "README.md"


def _section(title: str) -> str:
    return README.read_text().split(f"## {title}\n", 1)[1].split("\n## ")[0]


def _commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = (
        action
        for action in parser._actions
        if isinstance(action, type(parser._subparsers._group_actions[0]))
    )
    return sorted(subparsers.choices)


def test_front_page_is_short_and_names_every_command():
    text = README.read_text()
    assert len(text.splitlines()) < 250
    commands = _commands()
    assert "serve" in commands and "tune" in commands
    for command in commands:
        assert f"tffm {command}" in text, command


def test_ci_markers_hold_one_command_each():
    text = README.read_text()
    for name in ("setup", "test", "demo"):
        block = re.search(
            rf"<!-- ci:{name} -->\n```bash\n(.+?)\n```\n<!-- /ci:{name} -->",
            text,
        )
        assert block is not None, name
        assert "\n" not in block.group(1), name
    assert "pytest --run-slow -n 2" in text


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="exports with tf2onnx"
)
def test_python_quick_start_runs(tmp_path, monkeypatch):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    code = re.search(
        r"```python\n(.*?)```", _section("Python quick start"), re.S
    ).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README quick start", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "ctr.onnx").is_file()
    probability = namespace["scores"]["probability"]
    assert probability.shape == (1, 1)
    # The ONNX file gives the Keras model's probability for the same row.
    encoder, model = namespace["encoder"], namespace["model"]
    row = {
        "city": np.array(["tokyo"]),
        "ad_id": np.array(["a1"]),
        "tags": np.array([["news", ""]]),
        "price": np.array([3.0], dtype="float32"),
    }
    expected = model.predict(encoder(row), verbose=0)
    if isinstance(expected, dict):
        expected = expected["probability"]
    np.testing.assert_allclose(
        probability, expected, atol=testing.ORT[0], rtol=testing.ORT[1]
    )
