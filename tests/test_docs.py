"""Every public name has a docstring (the numpy formula goes there when there is one)."""

from __future__ import annotations

import importlib
import inspect

import pytest

import edgepack

MODULES = ["edgepack", "edgepack.kernels", "edgepack.prune", "edgepack.sparse", "edgepack.cli"]


def _public(modname: str) -> list[tuple[str, object]]:
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError:
        return []
    names = getattr(mod, "__all__", [])
    out = []
    for n in names:
        v = getattr(mod, n, None)
        if inspect.isfunction(v) or inspect.isclass(v) or inspect.isbuiltin(v):
            out.append((f"{modname}.{n}", v))
    return out


@pytest.mark.parametrize("modname", MODULES)
def test_public_functions_and_classes_have_docstrings(modname):
    items = _public(modname)
    if not items and modname != "edgepack":
        pytest.skip(f"pending: {modname} not in this build yet")
    missing = [q for q, v in items if not (inspect.getdoc(v) or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"


def test_package_docstring():
    assert edgepack.__doc__ and "edgepack" in edgepack.__doc__
