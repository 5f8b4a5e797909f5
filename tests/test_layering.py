"""The package's layers and the absence of import cycles, read from the source with ``ast``
(docs/ARCHITECTURE.md).

Top down::

    cli -> run -> config -> training -> (wfa, encodings) -> (errors, schema, host)

A module may import from its own part and from any lower layer, never from a
higher one; wfa and encodings, on the same layer, never import each other.
Every import statement counts, including those inside functions. Separately,
no module-level import chain anywhere in the package may lead back to where it
started (a cycle between two modules of the same part is as confusing as one
across parts).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hashwfa"

#: Top-level part of hashwfa -> its layer (higher imports lower).
LAYER: Dict[str, int] = {
    "errors": 0,
    "schema": 0,
    "host": 0,
    "wfa": 1,
    "encodings": 1,
    "training": 2,
    "config": 3,
    "run": 4,
    "cli": 5,
}
#: The modules above layer 0 that the package root may import: the API it re-exports
#: (inside its module ``__getattr__``, so that ``import hashwfa`` stays light).
ROOT_REEXPORTS = {"hashwfa.run", "hashwfa.run.api"}
#: Parts of one layer that must not import each other.
STRANGERS = {frozenset({"wfa", "encodings"})}
#: Inside wfa, top down: a concept imports only from its own folder and the ones below it.
WFA_LAYER: Dict[str, int] = {"physics": 0, "observation": 1, "synthetic": 2, "baselines": 2, "uncertainty": 3}


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
    out = []
    for name, names in _import_statements(module, path, ast.parse(path.read_text(encoding="utf-8"))):
        if names is None:
            out.append(name)
        elif name == "hashwfa":
            # ``from hashwfa import schema`` names a submodule; ``__version__`` the root.
            out += [f"hashwfa.{a}" if a in _parts() else "hashwfa" for a in names]
        else:
            out.append(name)
    return [n for n in out if n == "hashwfa" or n.startswith("hashwfa.")]


def _import_statements(module: str, path: Path, tree: ast.AST) -> Iterator[Tuple[str, Optional[List[str]]]]:
    """``(module named, names imported from it or None for a plain import)`` for every import in ``tree``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, [alias.name for alias in node.names]


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
        if mine == "":  # hashwfa/__init__.py: the bottom layer, and the API it re-exports (lazily)
            assert LAYER[theirs] == 0 or name in ROOT_REEXPORTS, f"hashwfa/__init__.py imports {name}"
            continue
        assert LAYER[theirs] <= LAYER[mine], f"{module} imports {name}: layer {LAYER[mine]} importing layer {LAYER[theirs]}"
        assert frozenset({mine, theirs}) not in STRANGERS, f"{module} imports {name}"


def _wfa_concept(name: str) -> str:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "wfa" else ""


def test_every_wfa_concept_has_a_layer():
    concepts = {p.name for p in (PACKAGE / "wfa").iterdir() if (p / "__init__.py").exists()}
    loose = sorted(p.stem for p in (PACKAGE / "wfa").glob("*.py") if p.stem != "__init__")
    assert concepts == set(WFA_LAYER), "give each new wfa folder a place in WFA_LAYER (and ARCHITECTURE.md)"
    assert loose == [], f"wfa/ holds concept folders only, not loose modules: {loose}"


@pytest.mark.parametrize("module,path", [m for m in _modules() if _wfa_concept(m[0])],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_wfa_concepts_import_down_only(module, path):
    mine = _wfa_concept(module)
    for name in _imported(module, path):
        theirs = _wfa_concept(name)
        if theirs and theirs != mine:
            assert WFA_LAYER[theirs] < WFA_LAYER[mine], f"{module} imports {name}"


def _module_graph() -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (a name imported from a package counts as that
    package unless it is a submodule; imports under ``if TYPE_CHECKING:`` are annotations only)."""
    modules = dict(_modules())
    graph: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
                node.body = []
        targets = set()
        for name in _imported_from_tree(module, path, tree):
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != module:
                targets.add(name)
        if module == "hashwfa":
            # The root imports the API it re-exports on first attribute access, when the
            # root itself is complete: modules that read hashwfa.__version__ make no cycle with it.
            targets -= ROOT_REEXPORTS
        graph[module] = targets
    return graph


def _imported_from_tree(module: str, path: Path, tree: ast.AST) -> List[str]:
    """Every ``module.name`` an import statement of ``tree`` names (plain imports as they are)."""
    out = []
    for name, names in _import_statements(module, path, tree):
        out += [name] if names is None else [f"{name}.{a}" for a in names]
    return [n for n in out if n.startswith("hashwfa.")]


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere():
    assert _cycles(_module_graph()) == []


def test_the_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_a_violation(tmp_path):
    """The walk must catch upward imports, also relative ones and ones inside functions."""
    path = tmp_path / "__init__.py"
    path.write_text("def f():\n    from ..training import solver\n    from . import loss\nimport hashwfa.cli.train\n")
    assert sorted(_imported("hashwfa.wfa", path)) == ["hashwfa.cli.train", "hashwfa.training", "hashwfa.wfa"]
