"""The pre-`tffm.train` module names still import, warn, and forward."""

import importlib
import sys
import warnings

import pytest

from tffm import moved
from tffm.train import config
from tffm.train import pipeline
from tffm.train import resume
from tffm.train.distribute import parameter_server


def _import_fresh(name: str):
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, caught


@pytest.mark.parametrize("old", sorted(moved.MOVED))
def test_old_module_warns_and_names_its_new_home(old):
    module, caught = _import_fresh(old)
    deprecations = [
        w for w in caught if issubclass(w.category, DeprecationWarning)
    ]
    assert deprecations, f"importing {old} gave no DeprecationWarning"
    assert moved.MOVED[old][0] in str(deprecations[0].message)
    assert module.__name__ == old


def test_old_names_are_the_new_objects():
    training, _ = _import_fresh("tffm.training")
    old_config, _ = _import_fresh("tffm.config")
    old_resume, _ = _import_fresh("tffm.resume")
    old_ps, _ = _import_fresh("tffm.parameter_server")
    assert training.train is pipeline.train
    assert old_config.TrainConfig is config.TrainConfig
    assert old_resume.fit is resume.fit_resumable
    assert old_ps.fit is parameter_server.fit_on_cluster


def test_unknown_name_is_an_attribute_error_naming_the_old_module():
    training, _ = _import_fresh("tffm.training")
    with pytest.raises(AttributeError, match="tffm.training"):
        training.no_such_name  # noqa: B018


def test_every_forwarded_home_imports():
    for homes in moved.MOVED.values():
        for home in homes:
            importlib.import_module(home)
