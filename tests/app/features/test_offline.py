"""Offline features agree with values computed independently, event by event, from raw events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.config import DEFAULT_SIGNAL_WEIGHTS
from app.features import definitions as d
from app.features.offline import (
    AsOf,
    category_affinity,
    compute_offline_features,
    creator_affinity,
    item_features_asof,
    prepare_events,
    user_features_asof,
    watch_sequences,
    window_start_s,
)
from data.simulate.events import PublicationChunk, concat_chunks
from data.simulate.sessions import simulate_chunks
from data.simulate.world import World, WorldConfig

DAY_MS = 86_400_000
WEIGHTS = {str(k): v for k, v in DEFAULT_SIGNAL_WEIGHTS.items()}


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(seed=5, n_users=60, n_items=400, n_creators=30))


@pytest.fixture(scope="module")
def catalogue(world: World) -> pd.DataFrame:
    return PublicationChunk(np.arange(world.n_items, dtype=np.int32)).to_arrow(world).to_pandas()


@pytest.fixture(scope="module")
def raw(world: World, catalogue: pd.DataFrame) -> pd.DataFrame:
    """About nine simulated days of a tiny world, enriched like the ingestion job does."""
    events = concat_chunks([c.events for c in simulate_chunks(world, 9.0)]).to_arrow().to_pandas()
    events = events.rename(columns={"creator_id": "subscribed_creator_id"})
    for col in ["event_type", "content_type"]:
        events[col] = events[col].astype(str)
    meta = catalogue.set_index("media_id")
    for col in ["creator_id", "category", "language", "duration_s", "published_at"]:
        events[col] = events["media_id"].map(meta[col])
    events["enriched"] = True
    return events


def _ms(ts: pd.Series) -> np.ndarray:
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy()


def test_window_start_matches_windowed_sum() -> None:
    rng = np.random.default_rng(0)
    for window_s, bucket_s in [
        (d.WINDOW_7D_S, d.BUCKET_7D_S),
        (d.WINDOW_24H_S, d.BUCKET_24H_S),
        (d.WINDOW_1H_S, d.BUCKET_1H_S),
    ]:
        now = 1_735_000_000 + int(rng.integers(0, 10**6))
        ts = now - rng.integers(0, 3 * window_s, 500)
        buckets, counts = np.unique(d.bucket_of(ts, bucket_s), return_counts=True)
        expected = d.windowed_sum(buckets, counts, now, window_s, bucket_s)
        assert ((ts >= window_start_s(now, window_s, bucket_s)) & (ts <= now)).sum() == expected


def test_asof_sums_are_strictly_before_and_respect_lower_bound() -> None:
    keys = np.array(["a", "a", "a", "b", "b"], dtype=object)
    ts = np.array([10, 20, 30, 20, 40])
    index = AsOf(keys, ts)
    q = np.array(["a", "a", "a", "b", "c"], dtype=object)
    got = index.sum(1.0, q, np.array([20, 21, 31, 41, 50]), np.array([0, 15, 0, 30, 0]))
    assert got.tolist() == [1.0, 1.0, 3.0, 1.0, 0.0]


def test_user_features_match_independent_computation(raw: pd.DataFrame) -> None:
    ev = prepare_events(raw)
    start = ev["ts_ms"].min()
    rng = np.random.default_rng(1)
    users = rng.choice(ev["user_id"].unique(), 12, replace=False)
    times = start + rng.integers(2 * DAY_MS, 9 * DAY_MS, 12)
    queries = pd.DataFrame({"user_id": users, "as_of": times})
    got = user_features_asof(ev, queries)
    for i, (u, t) in enumerate(zip(users, times, strict=True)):
        t_s = (t - 1) // 1000  # the last second before T: the window is half-open, [.., T)
        lo = ((t_s // 86_400) - 6) * 86_400 * 1000  # 7 daily buckets up to that second's day
        mine = raw[
            (raw["user_id"] == u) & (_ms(raw["timestamp"]) < t) & (_ms(raw["timestamp"]) >= lo)
        ]
        plays = mine[mine["event_type"] == "media_started"].sort_values("timestamp")
        row = got.iloc[i]
        assert row["top_categories_7d"] == d.top_k_keys(dict(Counter(plays["category"])))
        assert row["preferred_language"] == d.argmax_key(dict(Counter(plays["language"])))
        n_video = (plays["content_type"] == "VIDEO").sum()
        assert row["preferred_content_type"] == d.preferred_content_type(
            n_video, len(plays) - n_video
        )
        mine_all = raw[
            (raw["user_id"] == u)
            & (_ms(raw["timestamp"]) < t)
            & (_ms(raw["timestamp"]) > t - 7 * DAY_MS)
        ]
        rolling = mine_all[mine_all["event_type"] == "media_started"].sort_values("timestamp")
        recent = list(dict.fromkeys(rolling["media_id"].tolist()[::-1]))[: d.RECENT_MEDIA_LIMIT]
        assert row["recent_media_7d"] == recent
        seconds = sum(
            d.consumed_seconds(e, None if pd.isna(f) else f, s)
            for e, f, s in zip(
                mine["event_type"], mine["consumed_fraction"], mine["duration_s"], strict=True
            )
        )
        firsts = raw[raw["user_id"] == u].groupby("session_id")["timestamp"].min()
        sessions = ((_ms(firsts) < t) & (_ms(firsts) >= lo)).sum()
        assert row["avg_session_duration"] == pytest.approx(
            float(d.avg_session_duration(seconds, sessions))
        )


def test_item_features_match_independent_computation(
    raw: pd.DataFrame, catalogue: pd.DataFrame
) -> None:
    ev = prepare_events(raw)
    popular = ev["media_id"].value_counts().index[:10].to_numpy()
    t = ev["ts_ms"].min() + 5 * DAY_MS + 1_234_567
    got = item_features_asof(ev, pd.DataFrame({"media_id": popular, "as_of": t}), catalogue)
    cat = catalogue.set_index("media_id")
    for i, m in enumerate(popular):
        mine = raw[(raw["media_id"] == m) & (_ms(raw["timestamp"]) < t)]
        ms = _ms(mine["timestamp"])
        starts = mine["event_type"] == "media_started"
        t_s = t // 1000
        lo24 = ((t_s // 3600) - 23) * 3600 * 1000
        lo1 = ((t_s // 300) - 11) * 300 * 1000
        row = got.iloc[i]
        assert row["play_count_24h"] == (starts & (ms >= lo24)).sum()
        assert row["views_1h"] == (starts & (ms >= lo1)).sum()
        likes, dislikes = (
            (mine["event_type"] == "media_liked").sum(),
            (mine["event_type"] == "media_disliked").sum(),
        )
        assert row["like_ratio"] == pytest.approx(float(d.like_ratio(likes, dislikes)))
        completes = (mine["event_type"] == "media_completed").sum()
        assert row["completion_rate"] == pytest.approx(
            float(d.completion_rate(completes, starts.sum()))
        )
        age = (t / 1000 - cat.loc[m, "published_at"].timestamp()) / 3600
        assert row["publish_age_hours"] == pytest.approx(max(age, 0.0))
        assert row["category"] == cat.loc[m, "category"]


def test_sequences_and_affinities_match_independent_computation(raw: pd.DataFrame) -> None:
    ev = prepare_events(raw)
    seq = watch_sequences(ev).set_index("user_id")
    cats = category_affinity(ev, WEIGHTS).set_index(["user_id", "category"])
    creators = creator_affinity(ev, WEIGHTS).set_index(["user_id", "creator_id"])
    for u in ev["user_id"].unique()[:8]:
        mine = raw[raw["user_id"] == u]
        plays = mine[mine["event_type"] == "media_started"].sort_values(
            ["timestamp", "media_id"], kind="stable"
        )
        assert seq.loc[u, "media_ids"] == plays["media_id"].tolist()
        assert seq.loc[u, "timestamps_ms"] == _ms(plays["timestamp"]).tolist()
        for cat, group in mine.groupby("category"):
            assert cats.loc[(u, cat), "score"] == pytest.approx(
                sum(WEIGHTS[e] for e in group["event_type"])
            )
        for creator, group in mine.groupby("creator_id"):
            assert creators.loc[(u, creator), "score"] == pytest.approx(
                sum(WEIGHTS[e] for e in group["event_type"])
            )
            subscribed = (group["event_type"] == "subscription_to_creator").any()
            assert bool(creators.loc[(u, creator), "subscribed"]) == bool(subscribed)
        shares = cats.loc[u, "share"]
        assert shares.sum() == pytest.approx(1.0) or shares.sum() == 0


@pytest.mark.integration
@pytest.mark.slow
def test_ray_job_writes_the_same_features(
    ray_local, raw: pd.DataFrame, catalogue: pd.DataFrame, tmp_path: Path
) -> None:
    from app.config import FeedraySettings
    from data.ingest import EVENT_SCHEMA

    root = tmp_path / "store" / "date=2025-01-01" / "hour=00"
    root.mkdir(parents=True)
    table = (
        pa.Table.from_pandas(
            raw.assign(
                kafka_topic="t",
                kafka_partition=0,
                kafka_offset=np.arange(len(raw)),
                kafka_timestamp_ms=0,
                playlist_id=raw["playlist_id"],
            ),
            preserve_index=False,
        )
        .select(EVENT_SCHEMA.names)
        .cast(EVENT_SCHEMA)
    )
    pq.write_table(table, root / "part.parquet")
    as_of = raw["timestamp"].min() + pd.Timedelta(days=6, hours=5)
    settings = FeedraySettings(state_dir=tmp_path)
    paths = compute_offline_features(
        settings, str(tmp_path / "store"), str(tmp_path / "features"), as_of
    )
    users = pq.read_table(paths["users"]).to_pandas().set_index("user_id").sort_index()
    items = pq.read_table(paths["items"]).to_pandas().set_index("media_id").sort_index()

    ev = prepare_events(raw)
    expected_u = user_features_asof(
        ev, pd.DataFrame({"user_id": sorted(ev["user_id"].unique()), "as_of": as_of})
    ).set_index("user_id")
    expected_u = expected_u.loc[users.index]
    assert (users["preferred_content_type"] == expected_u["preferred_content_type"]).all()
    assert np.allclose(users["avg_session_duration"], expected_u["avg_session_duration"])
    assert [list(v) for v in users["top_categories_7d"]] == expected_u["top_categories_7d"].tolist()
    before = ev[ev["ts_ms"] < int(as_of.value // 1_000_000)]
    seq = watch_sequences(before).set_index("user_id")
    assert [list(v) for v in users.loc[seq.index, "watch_media_ids"]] == seq["media_ids"].tolist()
    expected_i = item_features_asof(
        ev, pd.DataFrame({"media_id": items.index, "as_of": as_of}), catalogue
    ).set_index("media_id")
    assert np.allclose(items["play_count_24h"], expected_i["play_count_24h"])
    assert np.allclose(items["like_ratio"], expected_i["like_ratio"])
