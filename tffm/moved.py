"""The training modules' names before `tffm.train`, kept for one release.

`import tffm.training` (or `tffm.config`, `tffm.distribute`, ...) still
works: the old module is a stand-in that warns once (`DeprecationWarning`)
and finds each name in the module it moved to. Names a move renamed are
listed in `RENAMED`. The stand-ins go in the release after next.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

# Old module: the modules its names moved to, searched in order.
MOVED: dict[str, tuple[str, ...]] = {
    "tffm.training": (
        "tffm.train.pipeline",
        "tffm.train.build",
        "tffm.train.encode",
        "tffm.train.outputs",
        "tffm.train.inputs",
        "tffm.data.source",
    ),
    "tffm.config": ("tffm.train.config", "tffm.train.defaults"),
    "tffm.distribute": ("tffm.train.distribute",),
    "tffm.resume": ("tffm.train.resume", "tffm.data.order"),
    "tffm.parameter_server": ("tffm.train.distribute.parameter_server",),
    "tffm.callbacks": ("tffm.train.callbacks",),
    "tffm.tuning": ("tffm.train.tuning",),
    "tffm.calibration": ("tffm.train.calibration",),
    "tffm.evaluation": ("tffm.train.evaluation",),
    "tffm.precise_bn": ("tffm.train.precise_bn",),
}
# (old module, old name): the new name.
RENAMED: dict[tuple[str, str], str] = {
    ("tffm.resume", "fit"): "fit_resumable",
    ("tffm.parameter_server", "fit"): "fit_on_cluster",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module names; their modules forward to the new ones."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(
        self, spec: importlib.machinery.ModuleSpec
    ) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        homes = MOVED[old]
        warnings.warn(
            f"`{old}` moved to `{homes[0]}`; the old name goes in the "
            "release after next (see docs/architecture.md).",
            DeprecationWarning,
            stacklevel=2,
        )
        module.__doc__ = f"Moved to `{homes[0]}` (deprecated name)."

        def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562)
            new = RENAMED.get((old, name), name)
            for home in homes:
                target = importlib.import_module(home)
                if hasattr(target, new):
                    return getattr(target, new)
            raise AttributeError(f"module {old!r} has no attribute {name!r}")

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


def install() -> None:
    """Makes the old names importable (once per process)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
