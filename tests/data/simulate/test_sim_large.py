"""A large world generated in chunks stays within a computed memory bound."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from data.simulate.sessions import SessionConfig, simulate_chunks
from data.simulate.world import World, WorldConfig, world_memory_bytes

CONFIG = WorldConfig(seed=1, n_users=100_000, n_items=300_000, n_creators=10_000, chunk_rows=50_000)


@pytest.mark.slow
def test_large_world_memory_within_bound():
    d = CONFIG.latent_dim
    bound = (
        CONFIG.n_users * (2 * d + 11)
        + CONFIG.n_items * (2 * d + 26)
        + CONFIG.n_creators * (2 * d + 7)
        + CONFIG.n_categories * d * 4
    )
    tracemalloc.start()
    try:
        world = World.generate(CONFIG)
        _, peak_generate = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        config = SessionConfig(target_chunk_events=50_000)
        n_events = 0
        peaks = []
        for chunk in itertools.islice(simulate_chunks(world, 1.0, config), 12):
            n_events += len(chunk.events)
            peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    assert world_memory_bytes(world) == bound < 40_000_000
    # Chunked generation: temporaries are a few chunk-sized arrays on top of the world.
    chunk_temporaries = 40 * CONFIG.chunk_rows * d * 4
    assert peak_generate < bound + chunk_temporaries
    # Streaming: memory does not grow with the number of chunks simulated.
    assert n_events > 300_000
    stream_overhead = peaks[-1] - world_memory_bytes(world)
    assert peaks[-1] <= peaks[2] * 1.25, peaks
    assert stream_overhead < 400 * config.target_chunk_events * 8
    assert np.isfinite(world.item_latent.astype(np.float32)).all()
