"""Feast's Python SDK as the feature-read peer: run in a separate interpreter that has Feast.

    <feast python> bench/suite/feast_peer.py --redis HOST:PORT --rows rows.parquet \
        --sets sets.json --reads 1000 --out result.json

Feast (``feast[redis]``) pins pandas and redis below the project's own versions, so it lives
in its own virtual environment and this script imports nothing of the project. It generates a
feature repository in a temporary folder (a local registry, the Redis online store at
``--redis``, one entity ``media_id``, one feature view ``items`` over the columns of
``--rows``), writes the rows to Redis with ``FeatureStore.write_to_online_store`` (Feast's
own layout, beside the platform's keys on the same server), then times ``--reads`` calls of
``get_online_features(...).to_dict()`` for the entity sets of ``--sets`` (after a warm-up)
and writes the seconds of each call to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = """project: feedray_bench
registry: {registry}
provider: local
online_store:
  type: redis
  connection_string: "{redis}"
entity_key_serialization_version: 3
"""


def main() -> None:
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float64

    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True)
    ap.add_argument("--rows", required=True)
    ap.add_argument("--sets", required=True)
    ap.add_argument("--reads", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rows = pd.read_parquet(args.rows)
    features = [c for c in rows.columns if c != "media_id"]
    with tempfile.TemporaryDirectory(prefix="feedray-feast-") as folder:
        repo = Path(folder)
        (repo / "feature_store.yaml").write_text(
            REPO.format(registry=repo / "registry.db", redis=args.redis)
        )
        rows["event_timestamp"] = datetime.now(UTC) - timedelta(minutes=1)
        rows.to_parquet(repo / "items.parquet")
        item = Entity(name="media_id", join_keys=["media_id"], value_type=ValueType.STRING)
        schema = [
            Field(name=c, dtype=Array(Float64) if rows[c].dtype == object else Float64)
            for c in features
        ]
        view = FeatureView(
            name="items",
            entities=[item],
            ttl=timedelta(days=365),
            schema=schema,
            source=FileSource(path=str(repo / "items.parquet"), timestamp_field="event_timestamp"),
            online=True,
        )
        store = FeatureStore(repo_path=str(repo))
        store.apply([item, view])
        t0 = time.perf_counter()
        store.write_to_online_store("items", rows)
        write_s = time.perf_counter() - t0
        refs = [f"items:{c}" for c in features]
        sets = [[{"media_id": m} for m in s] for s in json.loads(Path(args.sets).read_text())]

        def read(k: int) -> dict:
            return store.get_online_features(
                features=refs, entity_rows=sets[k % len(sets)]
            ).to_dict()

        for k in range(min(20, args.reads)):  # warm-up
            read(k)
        seconds = []
        found = 0
        for k in range(args.reads):
            t = time.perf_counter()
            out = read(k)
            seconds.append(time.perf_counter() - t)
            found += sum(v is not None for v in out[features[0]])
    Path(args.out).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "rows_written": len(rows),
                "write_s": write_s,
                "features": len(features),
                "values_found_share": found
                / max(1, sum(len(sets[k % len(sets)]) for k in range(args.reads))),
            }
        )
    )


if __name__ == "__main__":
    main()
