"""The package's layers, read from the source with ``ast`` (docs/ARCHITECTURE.md).

Top down::

    cli -> (config, results, quicklook) -> training -> (wfa, encodings) -> (errors, atomic, schema)

A module may import from its own package and from any lower layer, never from
a higher one; wfa and encodings, on the same layer, never import each other.
Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hashwfa"

#: Top-level part of hashwfa -> its layer (higher imports lower).
LAYER: Dict[str, int] = {
    "errors": 0,
    "atomic": 0,
    "lock": 0,
    "schema": 0,
    "wfa": 1,
    "encodings": 1,
    "training": 2,
    "config": 3,
    "results": 3,
    "quicklook": 3,
    "cli": 4,
}
#: Parts of one layer that must not import each other.
STRANGERS = {frozenset({"wfa", "encodings"})}


def _parts() -> Set[str]:
    return {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}


def _modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imported(module: str, path: Path) -> List[str]:
    """Every hashwfa module named by an import in ``path`` (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "hashwfa":
                # ``from hashwfa import results`` names a submodule; ``__version__`` the root.
                out += [f"hashwfa.{a.name}" if a.name in _parts() else "hashwfa" for a in node.names]
            else:
                out.append(name)
    return [n for n in out if n == "hashwfa" or n.startswith("hashwfa.")]


def _part(name: str) -> str:
    return name.split(".")[1] if "." in name else ""


def test_every_part_of_the_package_has_a_layer():
    assert _parts() == set(LAYER), "give each new top-level module or package a layer in LAYER (and ARCHITECTURE.md)"


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_go_down_only(module, path):
    mine = _part(module)
    for name in _imported(module, path):
        theirs = _part(name)
        if theirs == "":
            # The package root holds the version and the error type only.
            assert mine != "", f"{module} imports {name}"
            continue
        if theirs == mine:
            continue
        if mine == "":  # hashwfa/__init__.py: only the bottom layer
            assert LAYER[theirs] == 0, f"hashwfa/__init__.py imports {name}"
            continue
        assert LAYER[theirs] <= LAYER[mine], f"{module} imports {name}: layer {LAYER[mine]} importing layer {LAYER[theirs]}"
        assert frozenset({mine, theirs}) not in STRANGERS, f"{module} imports {name}"


def test_the_checker_sees_a_violation(tmp_path):
    """The walk must catch upward imports, also relative ones and ones inside functions."""
    path = tmp_path / "__init__.py"
    path.write_text("def f():\n    from ..training import solver\n    from . import loss\nimport hashwfa.cli.train\n")
    assert sorted(_imported("hashwfa.wfa", path)) == ["hashwfa.cli.train", "hashwfa.training", "hashwfa.wfa"]
