"""The docs: every Python block runs, the API and CLI pages cover all.

A block preceded by `<!-- docs-test: skip (why) -->` is an illustrative
fragment and is not run; every other `python` block of a page runs, in
order and in one namespace, in a fresh working directory.
"""

import importlib
import pathlib
import re

import keras
import pytest

from tffm.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP = "<!-- docs-test: skip"
BLOCK = re.compile(r"(<!-- docs-test: skip[^\n]*\n)?```python\n(.*?)```", re.S)
# Packages whose `__all__` the API reference must cover.
PUBLIC = (
    "tffm",
    "tffm.layers",
    "tffm.models",
    "tffm.train",
    "tffm.train.distribute",
    "tffm.data",
    "export",
    "serving",
)


def python_blocks(path: pathlib.Path) -> list[str]:
    """The page's Python blocks to run (includes and skipped ones left out)."""
    return [
        code
        for skip, code in BLOCK.findall(path.read_text())
        if not skip and not code.lstrip().startswith("--8<--")
    ]


PAGES = sorted(p for p in DOCS.rglob("*.md") if python_blocks(p))


def test_pages_with_python_are_found():
    names = {p.name for p in PAGES}
    assert {"features.md", "training.md", "export.md"} <= names


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="pages use TF export"
)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    if "export" in page.read_text() and "from export" in page.read_text():
        pytest.importorskip("tf2onnx")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs"}
    for i, code in enumerate(python_blocks(page)):
        exec(compile(code, f"{page.name} block {i + 1}", "exec"), namespace)  # noqa: S102


def _documented() -> set[object]:
    """Every object an API page renders with `::: path`."""
    objects = set()
    for page in (DOCS / "api").glob("*.md"):
        for path in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M):
            module, _, name = path.rpartition(".")
            try:
                objects.add(id(getattr(importlib.import_module(module), name)))
            except ModuleNotFoundError:
                objects.add(id(importlib.import_module(path)))
    return objects


def test_api_reference_covers_every_public_name():
    pytest.importorskip("onnxruntime")
    documented = _documented()
    missing = []
    for package in PUBLIC:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if package == "tffm.train" and name == "encode":
                # `tffm.train.encode` is also the module's name.
                value = importlib.import_module("tffm.train.encode").encode
            if id(value) not in documented:
                missing.append(f"{package}.{name}")
    assert not missing, f"not in docs/api/*.md: {missing}"


def test_every_command_has_a_page_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    parser = build_parser()
    (commands,) = (
        a for a in parser._actions if hasattr(a, "choices") and a.choices
    )
    for command in commands.choices:
        assert f"cli/{command}.md" in nav, command
        assert f"(cli/{command}.md)" in (DOCS / "cli.md").read_text(), command
