"""The benchmarks in bench/ are not run by the suite (they take minutes to hours), so a refactor that
moves a module breaks them silently; this checks that every routerzoo name they import still exists."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from routerzoo... import name`` and ``import routerzoo...`` in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "routerzoo":
            out += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names if alias.name.split(".")[0] == "routerzoo"]
    return out


SCRIPTS = sorted(BENCH.glob("*.py"))


def test_there_are_bench_scripts():
    assert len(SCRIPTS) >= 3


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_imports_resolve(script):
    missing = []
    for module, name, line in _imports(script):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{script.name}:{line}: {module}: {exc}")
            continue
        if name and not hasattr(mod, name):
            try:  # a submodule (``from routerzoo.zoo import tracking``)
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{script.name}:{line}: {module} has no {name!r}")
    assert not missing, "\n".join(missing)
