"""The layering the architecture promises (docs/architecture.md): engines are pure and import no edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cartlab"
ENGINES = ("grading", "response", "kinetics", "protocol", "criteria")
#: what an engine must never import: the edges that consume engines
EDGES = ("cartlab.report", "cartlab.cli", "cartlab.app", "cartlab.analyze", "cartlab.explain")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", ENGINES)
def test_engines_import_no_edge(package):
    bad = {}
    for path in sorted((SRC / package).rglob("*.py")):
        hits = sorted(m for m in _imports(path) if any(m == e or m.startswith(e + ".") for e in EDGES))
        if hits:
            bad[str(path.relative_to(SRC))] = hits
    assert not bad, f"engines import the edges that consume them: {bad}"


def test_every_cartlab_import_resolves():
    """No module imports a cartlab module that does not exist (a moved module left a stale import)."""
    import importlib.util

    missing = {}
    for path in sorted(SRC.rglob("*.py")):
        for m in _imports(path):
            if m.startswith("cartlab.") and importlib.util.find_spec(m) is None:
                missing.setdefault(str(path.relative_to(SRC)), []).append(m)
    assert not missing, missing
