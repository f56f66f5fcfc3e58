"""Run the docstring examples of every care_flows module (they are documentation: keep them true)."""

import doctest
import importlib
import pkgutil
import tempfile

import pytest

import care_flows

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(care_flows.__path__, "care_flows.")
    if info.name != "care_flows.prefect_plugin"
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, tmp_path, monkeypatch):
    # The examples make folders with tempfile.mkdtemp(), as a reader would: here they go under the test's tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
