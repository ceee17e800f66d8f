"""The import graph of the project's packages: no cycles, and no layer imports upward.

Read from the source with ``ast`` (nothing is imported), so every import counts: module
level, inside functions, and under ``if TYPE_CHECKING``. Layers: ``app`` is the core and
imports none of the others (``app/cli.py``, the composition root, mounts them all);
``data`` and ``deployments`` import only ``app`` and themselves; ``train`` imports ``app``
and ``data`` and itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "data", "deployments", "train")

# Which top-level packages each layer may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "app": frozenset(),
    "data": frozenset({"app"}),
    "deployments": frozenset({"app"}),
    "train": frozenset({"app", "data"}),
}
# Modules that may import any layer.
COMPOSITION_ROOTS = frozenset({"app.cli"})


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the module pkg.sub when there is one.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            targets = [t for t in targets[:-1] if t in modules] or [base]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    modules = project_modules(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        graph.add_edges_from((module, target) for target in imports_of(module, path, modules))
    return graph


def import_cycles(graph: nx.DiGraph) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def upward_imports(graph: nx.DiGraph) -> set[tuple[str, str]]:
    """(importer, imported) pairs that break the layers."""
    bad: set[tuple[str, str]] = set()
    for importer, imported in graph.edges:
        if importer in COMPOSITION_ROOTS:
            continue
        layer, target = importer.split(".")[0], imported.split(".")[0]
        if target != layer and target not in ALLOWED[layer]:
            bad.add((importer, imported))
    return bad


def test_the_graph_sees_the_project():
    graph = import_graph()
    # Module-level, function-level and relative imports are all edges.
    assert graph.has_edge("app.config", "app.models.config")
    assert graph.number_of_nodes() > 50 and graph.number_of_edges() > 100


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_no_layer_imports_upward():
    assert sorted(upward_imports(import_graph())) == []


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("app/features/thing.py", "from data.collector import run\n", "data.collector"),
        ("app/thing.py", "def f():\n    import train.common\n", "train.common"),
        ("data/thing.py", "from deployments import app\n", "deployments.app"),
        ("deployments/thing.py", "from ..train import common\n", "train.common"),
        ("app/serving/thing.py", "from app.stack.live import x\n", None),
        ("train/thing.py", "from data import collector\n", None),
    ],
)
def test_an_upward_import_is_caught(tmp_path, importer, source, expected):
    for module in (
        "app/__init__.py",
        "app/features/__init__.py",
        "app/serving/__init__.py",
        "app/stack/__init__.py",
        "app/stack/live.py",
        "data/__init__.py",
        "data/collector.py",
        "deployments/__init__.py",
        "deployments/app.py",
        "train/__init__.py",
        "train/common.py",
    ):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    (tmp_path / importer).write_text(source)
    bad = upward_imports(import_graph(tmp_path))
    importer_module = module_name(tmp_path / importer, tmp_path)
    assert bad == ({(importer_module, expected)} if expected else set())


def test_a_cycle_is_caught(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app/__init__.py").write_text("")
    (tmp_path / "app/a.py").write_text("from app.b import x\n")
    (tmp_path / "app/b.py").write_text("def f():\n    from app import a\n")
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    assert import_cycles(import_graph(tmp_path)) == [["app.a", "app.b"]]
