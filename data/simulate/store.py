"""A simulated world written as an offline store: hive-partitioned events + the catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from data.simulate.events import PublicationChunk
from data.simulate.sessions import simulate_chunks
from data.simulate.sinks import ParquetSink


def write_catalogue(world, path: str | Path, items: np.ndarray | None = None) -> Path:
    """Write a simulated world's catalogue (``CATALOGUE_SCHEMA`` columns + item_index)."""
    items = np.arange(world.n_items, dtype=np.int32) if items is None else items.astype(np.int32)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(PublicationChunk(items).to_arrow(world), path / "catalogue.parquet")
    return path


def write_simulated_store(world, days: float, root: str | Path) -> tuple[Path, Path]:
    """Simulate ``days`` of events into ``<root>/events`` (ParquetSink) and the catalogue
    into ``<root>/catalogue``; returns (events path, catalogue path)."""
    root = Path(root)
    sink = ParquetSink(root)
    for chunk in simulate_chunks(world, days):
        sink.write(chunk, world)
    sink.close()
    return root / "events", write_catalogue(world, root / "catalogue")
