"""`tffm --version` prints the one version the package declares."""

import contextlib
import io
import pathlib
import re

import pytest

import tffm
from tffm.cli import main


def test_version_flag_prints_the_package_version():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert out.getvalue().strip() == f"tffm {tffm.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tffm.__version__)
    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    assert 'attr = "tffm.__version__"' in pyproject.read_text()
