"""The public API is explicit: every name in __all__ resolves, and modules declare __all__."""

import importlib
import pkgutil

import care_flows


def test_every_exported_name_resolves():
    for name in care_flows.__all__:
        assert getattr(care_flows, name) is not None, name


def test_import_is_cheap_and_lazy():
    import subprocess
    import sys

    code = "import sys, care_flows; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_every_module_declares_all():
    missing = []
    for info in pkgutil.walk_packages(care_flows.__path__, "care_flows."):
        if info.name.split(".")[-1].startswith("_") or info.name.startswith("care_flows.cli.") or info.name == "care_flows.prefect_plugin":
            continue
        module = importlib.import_module(info.name)
        if not hasattr(module, "__all__"):
            missing.append(info.name)
    assert not missing, f"modules without __all__: {missing}"


def test_a_notebook_user_can_catch_every_error_and_call_the_api_plainly():
    import inspect

    from care_flows import errors

    for name in errors.__all__:  # every error class, so a new one cannot be left out of the package's API
        assert getattr(care_flows, name) is getattr(errors, name)
    params = inspect.signature(care_flows.care).parameters
    assert not any(p.startswith("_") for p in params) and params["policy_or_flow"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert care_flows.right_size("eu-north-1", 2, 8).instance_type == "t3.xlarge"  # embedded prices by default
    assert "abatement_usd_per_tco2" in care_flows.Decision.__doc__


def test_every_public_name_has_a_runnable_example():
    """Docstrings with runnable examples (tests/test_doctests.py runs them) for the whole public API."""
    import inspect

    missing = [name for name in care_flows.__all__ if not name.startswith("__")
               and not (inspect.isclass(obj := getattr(care_flows, name)) and issubclass(obj, Exception))
               and ">>>" not in (inspect.getdoc(obj) or "")]
    assert not missing, f"public names without a docstring example: {missing}"
