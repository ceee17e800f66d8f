"""Section ``memory``: this process's RSS, Redis memory per item and per user, index bytes.

Redis: ``INFO memory`` ``used_memory`` in total, and ``MEMORY USAGE`` of a random sample of
item records (``<prefix>:i:<id>``) and of users' keys (the user hash, ``:recent``, ``:pos``,
``:subs``), scaled to the world. Index bytes: the size of ``FeedIndex.save`` on disk (the
FAISS index in its CPU form + ids), and the index's own vector payload (ntotal x d x 4).
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import numpy as np
import redis

from app.config import FeedraySettings
from app.features.keys import RedisKeys


def rss_mb() -> dict[str, float]:
    """Current and peak resident set of this process, MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = float(line.split()[1]) / 1024.0
    return {
        "rss_mb": current,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _usage(client: redis.Redis, keys: list[str]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return [int(u or 0) for u in pipe.execute()]


def memory_section(
    settings: FeedraySettings,
    index,
    n_items: int,
    n_users: int,
    sample: int = 2_000,
    seed: int = 0,
) -> dict:
    """Memory figures; ``index`` is the served ``FeedIndex``."""
    rng = np.random.default_rng(seed)
    client = redis.Redis(**settings.redis.client_kwargs())
    keys = RedisKeys(settings.online_store.prefix)
    info = client.info("memory")
    items = [f"m{i}" for i in rng.choice(n_items, min(sample, n_items), replace=False)]
    users = [f"u{u}" for u in rng.choice(n_users, min(sample, n_users), replace=False)]
    per_item = _usage(client, [keys.item(m) for m in items])
    user_keys = [
        k
        for u in users
        for k in (keys.user(u), keys.user_recent(u), keys.user_positive(u), keys.user_subs(u))
    ]
    per_user = np.asarray(_usage(client, user_keys)).reshape(len(users), 4).sum(axis=1)
    with tempfile.TemporaryDirectory(prefix="feedray-bench-index-") as folder:
        saved = index.save(folder)
        on_disk = {p.name: p.stat().st_size for p in Path(saved).iterdir()}
    return {
        "process": rss_mb(),
        "redis": {
            "used_memory_bytes": int(info["used_memory"]),
            "used_memory_dataset_bytes": int(info.get("used_memory_dataset", 0)),
            "keys": int(client.dbsize()),
            "used_memory_per_item_and_user_bytes": int(info["used_memory"]) / (n_items + n_users),
            "item_record_bytes_mean": float(np.mean(per_item)),
            "item_sample": len(items),
            "user_keys_bytes_mean": float(per_user.mean()),
            "users_with_keys_share": float((per_user > 0).mean()),
            "user_sample": len(users),
            "items_total_estimate_bytes": float(np.mean(per_item)) * n_items,
            "users_total_estimate_bytes": float(per_user.mean()) * n_users,
        },
        "index": {
            "kind": index.params.kind,
            "items": len(index),
            "vector_bytes": len(index) * index.params.dim * 4,
            "saved_bytes": on_disk,
            "saved_total_bytes": sum(on_disk.values()),
        },
    }
