"""Shared simulated worlds for the ``data`` tests.

``tests/data`` has no ``__init__.py`` on purpose; the repository root goes first on
``sys.path`` so ``import data`` always means the project package, never this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("data"), "__file__", "") is None:  # a namespace for tests/data
    for _name in [n for n in sys.modules if n == "data" or n.startswith("data.")]:
        del sys.modules[_name]

import pytest  # noqa: E402

from data.simulate.events import EventChunk, concat_chunks  # noqa: E402
from data.simulate.sessions import SimulationChunk, simulate_chunks  # noqa: E402
from data.simulate.world import World, WorldConfig  # noqa: E402

SMALL = WorldConfig(seed=7, n_users=3_000, n_items=20_000, n_creators=600)


@pytest.fixture(scope="session")
def small_world() -> World:
    return World.generate(SMALL)


@pytest.fixture(scope="session")
def small_chunks(small_world: World) -> list[SimulationChunk]:
    """Two simulated days of the small world (about 150k events)."""
    return list(simulate_chunks(small_world, 2.0))


@pytest.fixture(scope="session")
def small_events(small_chunks: list[SimulationChunk]) -> EventChunk:
    return concat_chunks([c.events for c in small_chunks])
