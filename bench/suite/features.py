"""Section ``features``: online feature reads from the bootstrapped world's Redis.

The timing is ``bench.bench_feature_reads.time_feature_reads`` (one user per read; 500
random items per read; the one-hash-per-item pipelined HGETALL layout as the baseline), here
over the world's own users and items. Side by side, when an interpreter with Feast is
configured (``bench.feast_python``): Feast's SDK ``get_online_features`` for the same item
sets, their rows (every field of the packed item record, as the store reads it) written to
the same Redis by Feast itself (``bench/suite/feast_peer.py``, run in that interpreter).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import redis

from app.config import FeedraySettings
from app.features.layout import ITEM_LAYOUT
from app.features.online_store import OnlineStore
from bench.bench_feature_reads import time_feature_reads
from bench.common import percentiles

PEER = Path(__file__).with_name("feast_peer.py")


def feast_peer(
    settings: FeedraySettings,
    store: OnlineStore,
    item_sets: list[list[str]],
    now_s: float,
    reads: int,
    python: Path | None,
) -> dict:
    """Feast's ``get_online_features`` over ``item_sets`` (``reads`` calls), or why not run."""
    if python is None or not Path(python).exists():
        return {"status": f"not run: no interpreter with Feast at {python} (make bench-feast)"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    needed = sorted({m for s in item_sets for m in s})
    raw = store.read_items(needed, now_s).raw
    columns: dict = {"media_id": needed}
    for name in ITEM_LAYOUT.dtype.names:
        columns[name] = raw[name].astype(np.float64).tolist()
    with tempfile.TemporaryDirectory(prefix="feedray-feast-rows-") as folder:
        rows, sets, out = (Path(folder) / n for n in ("rows.parquet", "sets.json", "out.json"))
        pq.write_table(pa.table(columns), rows)
        sets.write_text(json.dumps(item_sets))
        done = subprocess.run(
            [str(python), str(PEER), "--redis", f"{settings.redis.host}:{settings.redis.port}"]
            + ["--rows", str(rows), "--sets", str(sets), "--reads", str(reads), "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return {"status": "failed", "stderr_tail": done.stderr[-2_000:]}
        result = json.loads(out.read_text())
    version = subprocess.run(
        [str(python), "-c", "import feast; print(feast.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "status": "measured",
        "feast_version": version,
        "reads": reads,
        "features_per_row": result["features"],
        "rows_written_by_feast": result["rows_written"],
        "write_s": result["write_s"],
        "values_found_share": result["values_found_share"],
        "get_online_features_500": percentiles(result["seconds"]),
    }


def feature_section(
    settings: FeedraySettings,
    n_users: int,
    n_items: int,
    now_s: float,
    reads: int,
    feast_python: Path | None = None,
    feast_reads: int = 1_000,
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
    feast = feast_peer(settings, store, item_sets, now_s, feast_reads, feast_python)
    if feast["status"] == "measured":
        ours = figures["read_items_500"]["p99_ms"]
        feast["p99_over_ours"] = feast["get_online_features_500"]["p99_ms"] / max(ours, 1e-9)
    return {
        "reads": reads,
        "batch": batch,
        "sampled_users_with_features": known / min(256, len(users)),
        **figures,
        "feast_sdk": feast,
        "targets": {
            "read_user_p99_ms": 1.0,
            "read_items_500_p99_ms": 3.0,
            "feast_p99_over_ours": 10.0,
        },
    }
