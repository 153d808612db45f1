"""Every script in examples/ runs end to end on small data."""

import contextlib
import io
import json
import math
import pathlib
import re
import runpy
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="exports with tf2onnx"
)


def run_example(name: str, *args: str) -> str:
    """Runs examples/<name> as `python examples/<name> args`; its stdout."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [str(EXAMPLES / name), *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


def test_every_example_is_tested_and_listed():
    tested = set(
        re.findall(
            r'run_example\(\s*"(\w+\.py)"', pathlib.Path(__file__).read_text()
        )
    )
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == tested
    listing = (EXAMPLES / "README.md").read_text()
    docs = (ROOT / "docs" / "examples.md").read_text()
    for script in scripts:
        assert f"({script})" in listing, script
        assert f'"examples/{script}"' in docs, script


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    pytest.importorskip("tf2onnx")
    output = tmp_path_factory.mktemp("fit")
    text = run_example(
        "fit_custom_spec.py", "--output", str(output), "--rows", "3000",
        "--epochs", "1",
    )  # fmt: skip
    return output, text


def test_fit_custom_spec_reloads_and_exports(fitted):
    output, text = fitted
    auc = float(re.search(r"test AUC: ([0-9.]+)", text).group(1))
    assert 0.0 <= auc <= 1.0
    assert "reloaded .keras: max difference 0.00e+00" in text
    assert (output / "model.onnx").is_file()


def test_score_onnx_scores_every_row_in_order(fitted, tmp_path):
    output, _ = fitted
    rows = [
        {"country": "jp", "ad_id": "ad7", "interests": ["tech"], "bid": 2.5},
        {"country": "us", "interests": ["sport", "news"], "bid": None},
        {"country": "zz"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    text = run_example(
        "score_onnx.py", str(output / "model.onnx"), str(path),
        "--batch-size", "2",
    )  # fmt: skip
    lines = text.strip().splitlines()
    assert lines[0] == "line,probability,logit"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    for line in lines[1:]:
        _, probability, logit = map(float, line.split(","))
        # The two outputs of one row agree: probability = sigmoid(logit).
        assert probability == pytest.approx(
            1 / (1 + math.exp(-logit)), abs=1e-5
        )


@pytest.mark.slow
def test_criteo_ctr_serves_what_it_exported(tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("uvicorn")
    data = DATA / "criteo_kaggle_format_8k"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    text = run_example(
        "criteo_ctr.py", "--data", str(data), "--output", str(tmp_path),
        "--epochs", "1",
    )  # fmt: skip
    assert re.search(r"test AUC 0\.\d{4}", text)
    assert "largest difference from the local ONNX predictor" in text
    difference = float(text.rsplit(":", 1)[1])
    assert difference <= 1e-6  # the server runs the same ONNX file
    assert (tmp_path / "exported" / "models.config").is_file()


def test_movielens_regression_trains_on_side_fields(tmp_path):
    data = DATA / "movielens_100k"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    text = run_example(
        "movielens_regression.py", "--data", str(data), "--output",
        str(tmp_path), "--rows", "5000", "--epochs", "1",
    )  # fmt: skip
    rmse = float(re.search(r"test RMSE ([0-9.]+)", text).group(1))
    assert math.isfinite(rmse)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["task"] == "regression"
    assert config["columns"]["genres"]["kind"] == "list"
    header = (tmp_path / "data" / "test.csv").read_text().splitlines()[0]
    assert header == "rating,user,item,age,gender,occupation,genres,year"
