"""The import rule that keeps the IR the ground floor: codesign/ir imports nothing built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import codesign

IR = Path(codesign.__file__).parent / "ir"
UPPER = ("codesign.frontends", "codesign.passes", "codesign.backends", "codesign.search", "codesign.cli")


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (TYPE_CHECKING and function-local imports included)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module if node.level == 0 else f"<relative>.{node.module}")
    return names


def test_ir_imports_nothing_above_it():
    files = sorted(IR.glob("*.py"))
    assert len(files) >= 5  # the rule is checked on the real package
    bad = [(f.name, m) for f in files for m in _imports(f) if m.startswith(UPPER) or m.startswith("<relative>")]
    assert bad == []


def test_rule_catches_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from codesign.passes.base import as_pass\n")
    assert _imports(f) == ["codesign.passes.base"]
