"""Section ``features``: online feature reads from the bootstrapped world's Redis.

The timing is ``bench.bench_feature_reads.time_feature_reads`` (one user per read; 500
random items per read; the one-hash-per-item pipelined HGETALL layout as the baseline), here
over the world's own users and items. Feast's SDK side by side is not measured (see
``FEAST_STATUS``).
"""

from __future__ import annotations

import numpy as np
import redis

from app.config import FeedraySettings
from app.features.online_store import OnlineStore
from bench.bench_feature_reads import time_feature_reads

FEAST_STATUS = (
    "not measured: the Feast SDK is not installed in this environment and was not added as an "
    "extra in this change; the in-run peer is the one-hash-per-item pipelined HGETALL layout"
)


def feature_section(
    settings: FeedraySettings,
    n_users: int,
    n_items: int,
    now_s: float,
    reads: int,
    batch: int = 500,
    seed: int = 0,
) -> dict:
    """Latency figures of the world's Redis for one user and ``batch`` items per read."""
    rng = np.random.default_rng(seed)
    client = redis.Redis(**settings.redis.client_kwargs())
    store = OnlineStore(client, settings.online_store)
    users = [f"u{u}" for u in rng.choice(n_users, min(n_users, 4_096), replace=False)]
    item_sets = [[f"m{i}" for i in rng.integers(0, n_items, batch)] for _ in range(64)]
    known = sum(store.read_user(u, now_s).known for u in users[:256])
    figures = time_feature_reads(store, client, users, item_sets, now_s, reads)
    return {
        "reads": reads,
        "batch": batch,
        "sampled_users_with_features": known / min(256, len(users)),
        **figures,
        "feast_sdk": {"status": FEAST_STATUS},
        "targets": {"read_user_p99_ms": 1.0, "read_items_500_p99_ms": 3.0},
    }
