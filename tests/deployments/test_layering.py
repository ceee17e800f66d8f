"""The Serve layer's imports: no cycle among deployments/ modules, none upward from app/serving."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    """Module -> every module it imports (top level or inside functions), for one package."""
    out = {}
    for path in sorted((ROOT / package).glob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[name] = found
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles = []
    for start in graph:
        todo = [(start, [start])]
        while todo:
            node, path = todo.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(path)
                elif nxt in graph and nxt not in path:
                    todo.append((nxt, [*path, nxt]))
    return cycles


def test_deployments_modules_import_no_cycle():
    graph = _imports("deployments")
    assert "deployments.stages" in graph
    assert _cycles(graph) == []


def test_app_serving_imports_nothing_from_the_outer_layers():
    upward = {
        module: sorted(m for m in found if m.split(".")[0] in {"deployments", "data", "train"})
        for module, found in _imports("app/serving").items()
    }
    assert {m: found for m, found in upward.items() if found} == {}


def test_both_placements_implement_the_stages_protocol():
    from app.serving.stages import Stages
    from deployments.stages import LocalStages, RemoteStages

    assert isinstance(RemoteStages(None, None), Stages)
    local = LocalStages.__new__(LocalStages)  # the protocol's methods, without loading models
    assert isinstance(local, Stages)
