"""The architecture's rules, read from the source with `ast` and `tokenize`.

Plain Python: nothing here imports TensorFlow, Keras or the project, so the
checks run in well under a second. Every failure lists each violation as
`path:line` so that one pass fixes them all; each checker also has a
self-test on a synthetic snippet that it must catch.

1. No import cycle among the project's modules (function-level imports
   count; `if TYPE_CHECKING:` blocks do not).
2. The library (`tffm/` outside `tffm/cli/`) imports nothing from `export`
   or `serving`.
3. No `print(` in the library, `export/` or `serving/` outside the
   command-line entry points listed in `PRINT_ALLOWED`.
4. No dated experiment notes in comments.
5. A function-level import of a project module or a heavy framework says
   why it is deferred: `# deferred: ...` or `# optional: ...`.
"""

import ast
import collections
import dataclasses
import functools
import io
import pathlib
import re
import tokenize
import unittest
from collections.abc import Iterator
from collections.abc import Mapping

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("tffm", "export", "serving")
# The library's command line, which may print and import `export`/`serving`.
CLI = "tffm.cli"
# Frameworks a function may import only with a `# deferred:` / `# optional:`
# comment saying why the import waits (standard-library imports need none).
HEAVY = frozenset(
    {
        "tensorflow",
        # `tensorflow_serving.apis` loads TensorFlow's protos, so TensorFlow.
        "tensorflow_serving",
        "keras",
        "tf2onnx",
        "onnxruntime",
        "onnx",
        "torch",
        "jax",
        "keras_tuner",
        "apache_beam",
        "pyarrow",
        "matplotlib",
        "grpc",
        "uvicorn",
        "farmhash",
        "sklearn",
    }
)
# Modules of `export/` and `serving/` whose job is the command line, so
# `print(` is their way to talk to the user. `tffm/cli/` is exempt whole;
# `tffm/testing.py` prints nothing and has no exemption.
PRINT_ALLOWED = {
    "serving/__main__.py": "`python -m serving`: parses flags, prints errors",
    "serving/cli.py": "`tffm serve`'s flags and run, called by the CLIs",
    "serving/server.py": "the serve process's `listening` line on stdout",
    "serving/workers.py": "the supervisor's `listening` line and exit notes",
}
DEFER_MARK = re.compile(r"(?:^|\s)#\s?(?:deferred|optional):\s*\S")
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?"
    r"|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"20\d\d"
# Dated notes and experiment history, not explanations: "(2026-11-30)",
# "on 2026-12-01 ...", "Nov 2026", "30 November 2026", "measured on an
# H100", "we tried ...", "the benchmark showed ...". A bare year, or
# "measured on the holdout", is an explanation and passes.
DATED_NOTE = re.compile(
    rf"\b{_YEAR}-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01]))?\b"
    rf"|\b{_DAY}[./]{_DAY}[./]{_YEAR}\b"
    rf"|\b{_MONTH}\.?\s+(?:{_DAY},?\s+)?{_YEAR}\b"
    rf"|\b{_DAY}\s+{_MONTH}\.?,?\s+{_YEAR}\b"
    r"|\bmeasured\s+on\s+(?:an?\s+|my\s+|our\s+|the\s+)?"
    rf"(?:{_YEAR}|{_MONTH}\b|[AHLTV]\d{{2,3}}\b|T4\b|L4\b|TPU|GPU|CPU|laptop"
    r"|workstation|machine|dev\s?box)"
    r"|\bwe\s+tried\b"
    r"|\bbenchmarks?\s+(?:run\s+)?show(?:ed|s)?\b",
    re.IGNORECASE,
)


@dataclasses.dataclass
class Source:
    """One `.py` file: its module name, syntax tree and comments."""

    path: str  # relative to the repository root, with `/`
    module: str
    is_package: bool
    text: str
    tree: ast.Module

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @functools.cached_property
    def comments(self) -> dict[int, str]:
        """Line: the comment ending it (by `tokenize`: none in strings)."""
        comments = {}
        for token in tokenize.generate_tokens(io.StringIO(self.text).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string
        return comments

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return (
            self.module if self.is_package else self.module.rpartition(".")[0]
        )


@dataclasses.dataclass
class ImportSite:
    """An import statement and where it stands."""

    source: Source
    node: ast.Import | ast.ImportFrom
    block: list[ast.stmt]  # the statements it is one of
    index: int
    function_level: bool
    type_checking: bool

    @property
    def where(self) -> str:
        return f"{self.source.path}:{self.node.lineno}"


def module_name(path: str) -> tuple[str, bool]:
    """`tffm/a/b.py` -> (`tffm.a.b`, False); `tffm/a/__init__.py` -> package."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def parse_sources(files: Mapping[str, str]) -> dict[str, Source]:
    """{path: text} -> {module: Source}."""
    sources = {}
    for path, text in sorted(files.items()):
        module, is_package = module_name(path)
        tree = ast.parse(text, filename=path)
        sources[module] = Source(path, module, is_package, text, tree)
    return sources


def read_project() -> dict[str, Source]:
    files = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            files[file.relative_to(ROOT).as_posix()] = file.read_text("utf-8")
    return parse_sources(files)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def import_sites(source: Source) -> Iterator[ImportSite]:
    """Every import statement of `source`, wherever it stands."""

    def visit(
        block: list[ast.stmt], function_level: bool, type_checking: bool
    ) -> Iterator[ImportSite]:
        for index, node in enumerate(block):
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield ImportSite(
                    source, node, block, index, function_level, type_checking
                )
                continue
            inner = function_level or isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef
            )
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from visit(node.body, inner, True)
                yield from visit(node.orelse, inner, type_checking)
                continue
            for _, value in ast.iter_fields(node):
                if isinstance(value, list) and value:
                    if isinstance(value[0], ast.stmt):
                        yield from visit(value, inner, type_checking)
                    elif isinstance(
                        value[0], ast.excepthandler | ast.match_case
                    ):
                        for handler in value:
                            yield from visit(handler.body, inner, type_checking)

    yield from visit(source.tree.body, False, False)


def moved_names(sources: Mapping[str, Source]) -> dict[str, tuple[str, ...]]:
    """`tffm.moved.MOVED`: old module names and the modules they forward to."""
    moved = sources.get("tffm.moved")
    if moved is None:
        return {}
    for node in moved.tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "MOVED" and node.value:
            return ast.literal_eval(node.value)
    return {}


def imported_names(site: ImportSite) -> list[str]:
    """The absolute names an import asks for, one per imported alias.

    `import a.b` -> `a.b`; `from a.b import c` -> `a.b.c`; relative imports
    are made absolute against the file's package.
    """
    node = site.node
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = site.source.package.split(".")
        keep = len(package) - (node.level - 1)
        base = ".".join(package[:keep] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]


def _project_module(
    name: str, sources: Mapping[str, Source], moved: Mapping[str, tuple]
) -> tuple[str, ...] | None:
    if name in sources:
        return (name,)
    if name in moved:  # a deprecated stand-in forwards to these
        return tuple(moved[name])
    return None


def resolve(
    site: ImportSite,
    sources: Mapping[str, Source],
    moved: Mapping[str, tuple] = {},  # noqa: B006 (read only)
) -> tuple[list[str], list[str]]:
    """The project modules an import binds to, and names it could not find.

    `import a.b.c` is `a.b.c`; `from a.b import c` is `a.b.c` if that is a
    module (file or package), else `a.b`. Parent packages run implicitly
    are not counted.
    """
    targets, unresolved = [], []
    for name in imported_names(site):
        if name.split(".")[0] not in PACKAGES:
            continue
        found = _project_module(name, sources, moved)
        if found is None and isinstance(site.node, ast.ImportFrom):
            found = _project_module(name.rpartition(".")[0], sources, moved)
        if found is None:
            unresolved.append(name)
        else:
            targets.extend(found)
    return targets, unresolved


def import_graph(
    sources: Mapping[str, Source],
) -> dict[str, dict[str, list[ImportSite]]]:
    """module -> imported module -> the statements importing it."""
    moved = moved_names(sources)
    graph: dict[str, dict[str, list[ImportSite]]] = {m: {} for m in sources}
    for module, source in sources.items():
        for site in import_sites(source):
            if site.type_checking:
                continue
            for target in resolve(site, sources, moved)[0]:
                if target != module:
                    graph[module].setdefault(target, []).append(site)
    return graph


def strongly_connected(
    graph: Mapping[str, Mapping[str, object]],
) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def _shortest_path(
    graph: Mapping[str, Mapping[str, object]],
    start: str,
    goal: str,
    within: set[str],
) -> list[str]:
    came_from = {start: start}
    queue = collections.deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = [v]
            while path[-1] != start:
                path.append(came_from[path[-1]])
            return path[::-1]
        for w in sorted(graph.get(v, ())):
            if w in within and w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{goal} is not reachable from {start}")


def find_cycles(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Cycles covering every import inside each strongly connected group.

    For each edge u -> v of a group: u, then the shortest way from v back to
    u. Each cycle is listed once, starting at its smallest module, and ends
    where it starts: [a, b, a].
    """
    cycles = []
    for component in strongly_connected(graph):
        members = set(component)
        for u in component:
            for v in sorted(graph[u]):
                if v not in members:
                    continue
                ring = [u] + _shortest_path(graph, v, u, members)[:-1]
                first = ring.index(min(ring))
                ring = ring[first:] + ring[:first]
                if ring + ring[:1] not in cycles:
                    cycles.append(ring + ring[:1])
    return cycles


def describe_cycles(
    graph: Mapping[str, Mapping[str, list[ImportSite]]],
) -> list[str]:
    """Each cycle as `a -> b -> a`, then each hop's import statements."""
    described = []
    for cycle in find_cycles(graph):
        lines = [" -> ".join(cycle)]
        for u, v in zip(cycle, cycle[1:], strict=False):
            for site in graph[u][v]:
                level = "function-level" if site.function_level else "top-level"
                lines.append(f"    {site.where}: {u} imports {v} ({level})")
        described.append("\n".join(lines))
    return described


def in_library(module: str) -> bool:
    """`tffm` and its modules, less the command line `tffm.cli`."""
    top = module.split(".")[0] == "tffm"
    return top and module != CLI and not module.startswith(CLI + ".")


def layering_violations(sources: Mapping[str, Source]) -> list[str]:
    """The library's imports of `export` / `serving`, static or importlib."""
    found = []
    for module, source in sources.items():
        if not in_library(module):
            continue
        for site in import_sites(source):  # TYPE_CHECKING ones too: a type
            for name in imported_names(site):  # from there is a dependency
                if name.split(".")[0] in ("export", "serving"):
                    found.append(f"{site.where}: imports {name}")
        if (
            "import_module" not in source.text
            and "__import__" not in source.text
        ):
            continue
        for node in ast.walk(source.tree):
            name = _dynamic_import(node)
            if name and name.split(".")[0] in ("export", "serving"):
                found.append(f"{source.path}:{node.lineno}: imports {name}")
    return found


def _dynamic_import(node: ast.AST) -> str | None:
    """`importlib.import_module("x")` / `__import__("x")`: "x"."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else None
    called = func.id if isinstance(func, ast.Name) else called
    arg = node.args[0]
    if called in ("import_module", "__import__") and isinstance(
        arg, ast.Constant
    ):
        return arg.value if isinstance(arg.value, str) else None
    return None


def print_violations(sources: Mapping[str, Source]) -> list[str]:
    found = []
    for module, source in sources.items():
        outside_cli = in_library(module) or module.split(".")[0] != "tffm"
        if not outside_cli or source.path in PRINT_ALLOWED:
            continue
        if "print" not in source.text:
            continue
        for node in ast.walk(source.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                found.append(f"{source.path}:{node.lineno}: print(")
    return found


def dated_note_violations(sources: Mapping[str, Source]) -> list[str]:
    found = []
    for source in sources.values():
        if not DATED_NOTE.search(source.text):
            continue  # nothing to tokenize for
        for line, comment in sorted(source.comments.items()):
            match = DATED_NOTE.search(comment)
            if match:
                found.append(
                    f"{source.path}:{line}: {match.group(0)!r} in {comment}"
                )
    return found


def _marked(site: ImportSite, node: ast.stmt) -> bool:
    lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
    # An import statement holds no string, so a `#` on its lines starts its
    # trailing comment (no need to tokenize).
    text = site.source.lines
    return any(DEFER_MARK.search(text[line - 1]) for line in lines)


def deferral_violations(sources: Mapping[str, Source]) -> list[str]:
    """Function-level imports of project modules / frameworks without why."""
    found = []
    for source in sources.values():
        for site in import_sites(source):
            if not site.function_level or site.type_checking:
                continue
            names = imported_names(site)
            if isinstance(site.node, ast.ImportFrom) and site.node.level:
                names = [site.source.package]  # relative: the project
            elif isinstance(site.node, ast.ImportFrom):
                names = [site.node.module or ""]
            tops = sorted(
                {n.split(".")[0] for n in names} & (HEAVY | set(PACKAGES))
            )
            if not tops:
                continue
            head = site.index
            while head > 0 and isinstance(
                site.block[head - 1], ast.Import | ast.ImportFrom
            ):
                head -= 1
            if _marked(site, site.node) or _marked(site, site.block[head]):
                continue
            what = ", ".join(tops)
            found.append(
                f"{site.where}: function-level import of {what} without "
                "`# deferred: ...` / `# optional: ...`"
            )
    return found


def unresolved_imports(sources: Mapping[str, Source]) -> list[str]:
    moved = moved_names(sources)
    found = []
    for source in sources.values():
        for site in import_sites(source):
            for name in resolve(site, sources, moved)[1]:
                found.append(f"{site.where}: no project module for {name}")
    return found


class ArchitectureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.sources = read_project()

    def assert_none(self, what: str, violations: list[str]) -> None:
        if violations:
            self.fail(f"{len(violations)} {what}:\n" + "\n".join(violations))

    def test_the_project_is_found(self):
        for package in PACKAGES:
            self.assertIn(package, self.sources)
        self.assertIn(CLI, self.sources)

    def test_project_imports_resolve(self):
        # The cycle check is only as good as the graph: every import of a
        # project name must find its module (or a `tffm.moved` stand-in).
        found = unresolved_imports(self.sources)
        self.assert_none("unresolved imports", found)

    def test_no_import_cycles(self):
        found = describe_cycles(import_graph(self.sources))
        self.assert_none("import cycles", found)

    def test_library_does_not_import_export_or_serving(self):
        found = layering_violations(self.sources)
        self.assert_none("library imports", found)

    def test_no_print_outside_the_command_lines(self):
        for path in PRINT_ALLOWED:
            self.assertTrue((ROOT / path).is_file(), f"stale exemption {path}")
        found = print_violations(self.sources)
        self.assert_none("print( calls", found)

    def test_no_dated_experiment_notes_in_comments(self):
        found = dated_note_violations(self.sources)
        self.assert_none("dated notes", found)

    def test_function_level_imports_say_why_they_wait(self):
        found = deferral_violations(self.sources)
        self.assert_none("unexplained deferred imports", found)


class CheckersCatchTest(unittest.TestCase):
    """Each checker, on a snippet it must catch (and one it must pass)."""

    def test_cycle_through_a_function_level_import(self):
        sources = parse_sources(
            {
                "tffm/__init__.py": "",
                "tffm/a.py": "def f():\n    from tffm import b\n",
                "tffm/b.py": "import tffm.a\n",
                "tffm/c.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from tffm import d\n",
                "tffm/d.py": "from . import c\n",
            }
        )
        found = describe_cycles(import_graph(sources))
        self.assertEqual(  # c <-> d is no cycle: TYPE_CHECKING only
            found,
            [
                "tffm.a -> tffm.b -> tffm.a\n"
                "    tffm/a.py:2: tffm.a imports tffm.b (function-level)\n"
                "    tffm/b.py:1: tffm.b imports tffm.a (top-level)"
            ],
        )

    def test_parent_package_counts_only_when_named(self):
        files = {
            "tffm/__init__.py": "",
            "tffm/train/__init__.py": "",
            "tffm/train/distribute/__init__.py": "from .plan import Plan\n",
            "tffm/train/distribute/plan.py": "Plan = 1\n",
        }
        self.assertEqual(find_cycles(import_graph(parse_sources(files))), [])
        files["tffm/train/distribute/plan.py"] = (
            "def f():\n    from tffm.train import distribute\n"
        )
        self.assertEqual(
            find_cycles(import_graph(parse_sources(files))),
            [
                [
                    "tffm.train.distribute",
                    "tffm.train.distribute.plan",
                    "tffm.train.distribute",
                ]
            ],
        )

    def test_three_module_cycle_is_one_chain(self):
        graph = {"a": {"b": 0}, "b": {"c": 0}, "c": {"a": 0, "d": 0}, "d": {}}
        self.assertEqual(find_cycles(graph), [["a", "b", "c", "a"]])

    def test_library_importing_serving(self):
        sources = parse_sources(
            {
                "tffm/x.py": "def f():\n    from serving.client import Client\n"
                "",
                "tffm/y.py": "import importlib\n"
                "m = importlib.import_module('export.onnx')\n",
                "tffm/cli/z.py": "from serving import cli\n",
            }
        )
        self.assertEqual(
            layering_violations(sources),
            [
                "tffm/x.py:2: imports serving.client.Client",
                "tffm/y.py:2: imports export.onnx",
            ],
        )

    def test_print_in_the_library(self):
        sources = parse_sources(
            {
                "tffm/x.py": "def f():\n    print('hi')\n",
                "tffm/cli/y.py": "print('ok')\n",
                "serving/__main__.py": "print('ok')\n",
                "serving/server.py": "print('listening')\n",
                "serving/batching.py": "print('queued')\n",
            }
        )
        self.assertEqual(
            print_violations(sources),
            ["serving/batching.py:1: print(", "tffm/x.py:2: print("],
        )

    def test_dated_notes(self):
        notes = [
            "# faster this way (2026-11-30)",
            "# on 2026-12-01 the fused table won",
            "# as of Nov 2026, 1.11x",
            "# 30 November 2026: slower",
            "# measured on an H100: 23% of a step",
            "# we tried a dense table first",
            "# the benchmark showed 1.8x",
        ]
        explanations = [
            "# the loss is measured on the holdout",
            "# ids 1 to 2026 are reserved",
            "# see PEP 562",
            "# may hold several members",
        ]
        text = "".join(f"x = 1  {c}\n" for c in notes + explanations)
        text += "y = '2026-11-30'  # a string is not a comment\n"
        found = dated_note_violations(parse_sources({"tffm/x.py": text}))
        self.assertEqual(
            [f.split(":")[1] for f in found],
            [str(i + 1) for i in range(len(notes))],
            found,
        )

    def test_deferred_imports_need_a_reason(self):
        text = (
            "import keras\n"
            "def f():\n"
            "    import json\n"  # standard library: fine
            "    from tffm.encoder import FeatureEncoder\n"  # caught
            "    import tensorflow as tf\n"  # same run, head unmarked: caught
            "def g():\n"
            "    import keras  # deferred: Keras\n"
            "    from tffm.models import FM\n"  # run's head says why
            "    from . import layers  # optional: the extra\n"
            "    x = 1\n"
            "    from tffm import encoder  # noqa: F401\n"  # caught
            "    if x:\n"
            "        try:\n"
            "            import onnx\n"  # caught
            "        except ImportError:\n"
            "            pass\n"
        )
        found = deferral_violations(parse_sources({"tffm/x.py": text}))
        self.assertEqual(
            [f.split(": ")[0] for f in found],
            ["tffm/x.py:4", "tffm/x.py:5", "tffm/x.py:11", "tffm/x.py:14"],
            found,
        )


if __name__ == "__main__":
    unittest.main()
