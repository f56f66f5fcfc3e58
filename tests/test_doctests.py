"""Run the docstring examples of every care_flows module (they are documentation: keep them true)."""

import doctest
import importlib
import pkgutil

import pytest

import care_flows

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(care_flows.__path__, "care_flows.")
    if info.name != "care_flows.prefect_plugin"
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
