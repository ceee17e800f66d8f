"""Training sets are point-in-time correct: a label never sees an event at or after its time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.config import DEFAULT_SIGNAL_WEIGHTS
from app.features import definitions as d
from data.training_sets import build_training_set, build_training_set_ray, make_labels

T0 = pd.Timestamp("2025-03-10T12:00:00", tz="UTC")
S = pd.Timedelta(seconds=1)
CATALOGUE = pd.DataFrame(
    {
        "media_id": ["m1", "m2", "m3"],
        "creator_id": ["c1", "c1", "c2"],
        "category": ["music", "music", "news"],
        "language": ["en", "en", "fr"],
        "content_type": ["VIDEO", "VIDEO", "AUDIO"],
        "duration_s": [100.0, 200.0, 300.0],
        "published_at": [T0 - pd.Timedelta(days=2)] * 3,
    }
)


def ev(event_id, user, media, event_type, ts, session="s1", fraction=None, content="VIDEO"):
    return {
        "event_id": event_id, "user_id": user, "media_id": media, "event_type": event_type,
        "timestamp": ts, "session_id": session, "consumed_fraction": fraction, "content_type": content,
        "subscribed_creator_id": None,
    }  # fmt: skip


def history() -> list[dict]:
    """u1 watched and liked m1 earlier; others engaged with m2 (the label item)."""
    return [
        ev("h1", "u1", "m1", "media_started", T0 - pd.Timedelta(hours=3), "s0"),
        ev("h2", "u1", "m1", "media_liked", T0 - pd.Timedelta(hours=3) + 10 * S, "s0"),
        ev("h3", "u2", "m2", "media_started", T0 - pd.Timedelta(minutes=30), "s9"),
        ev("h4", "u2", "m2", "media_completed", T0 - pd.Timedelta(minutes=25), "s9", 0.95),
    ]


def row_of(frame: pd.DataFrame, label_id: str) -> pd.Series:
    return frame.set_index("label_id").loc[label_id]


def test_label_heads_and_weights() -> None:
    events = pd.DataFrame(
        history()
        + [
            ev("x1", "u3", "m3", "media_started", T0, "s3", content="AUDIO"),
            ev("x2", "u3", "m3", "media_skipped", T0 + S, "s3", 0.1, content="AUDIO"),
        ]
    )
    labels = make_labels(events, DEFAULT_SIGNAL_WEIGHTS, "impression").set_index("label_id")
    assert labels.loc["h1", "strong_positive"] and not labels.loc["h1", "negative"]
    assert labels.loc["h1", "weight"] == pytest.approx(0.1 + 0.8)
    assert labels.loc["h3", "completion"] and labels.loc["x1", "negative"]
    assert labels.loc["x1", "n_events"] == 2
    per_event = make_labels(events, DEFAULT_SIGNAL_WEIGHTS, "event").set_index("label_id")
    assert len(per_event) == len(events) and per_event.loc["x2", "weight"] == pytest.approx(-0.4)


@pytest.mark.parametrize("granularity", ["event", "impression"])
def test_an_event_one_second_after_the_label_never_leaks(granularity: str) -> None:
    label = ev("L", "u1", "m2", "media_started", T0, "s1")
    base = history() + [label]
    after = base + [
        ev("A1", "u3", "m2", "media_liked", T0 + S, "s7"),  # item side: a like 1 s later
        ev("A2", "u1", "m3", "media_started", T0 + S, "s2", content="AUDIO"),  # user side
        ev("A3", "u1", "m1", "media_liked", T0 + S, "s2"),  # affinity for category/creator
        ev("A4", "u4", "m2", "media_started", T0, "s8"),  # same millisecond: not before either
    ]
    a = row_of(
        build_training_set(
            pd.DataFrame(base), DEFAULT_SIGNAL_WEIGHTS, catalogue=CATALOGUE, granularity=granularity
        ),
        "L",
    )
    b = row_of(
        build_training_set(
            pd.DataFrame(after),
            DEFAULT_SIGNAL_WEIGHTS,
            catalogue=CATALOGUE,
            granularity=granularity,
        ),
        "L",
    )
    features = [
        c
        for c in a.index
        if c not in ("weight", "completion", "strong_positive", "negative", "n_events")
    ]
    for name in features:
        assert repr(a[name]) == repr(b[name]), f"{name} leaked: {a[name]!r} -> {b[name]!r}"
    # the values themselves: only history counts
    assert a["item_likes"] == 0 and a["like_ratio"] == pytest.approx(float(d.like_ratio(0, 0)))
    assert a["item_starts"] == 1 and a["item_completes"] == 1
    assert a["recent_media_7d"] == ["m1"] and a["user_category_affinity"] == pytest.approx(0.9)


@pytest.mark.parametrize("granularity", ["event", "impression"])
def test_an_event_one_second_before_the_label_counts(granularity: str) -> None:
    label = ev("L", "u1", "m2", "media_started", T0, "s1")
    base = history() + [label]
    before = base + [
        ev("B1", "u3", "m2", "media_liked", T0 - S, "s7"),
        ev("B2", "u1", "m3", "media_started", T0 - S, "s2", content="AUDIO"),
        ev("B3", "u1", "m1", "media_liked", T0 - S, "s2"),
    ]
    a = row_of(
        build_training_set(
            pd.DataFrame(base), DEFAULT_SIGNAL_WEIGHTS, catalogue=CATALOGUE, granularity=granularity
        ),
        "L",
    )
    b = row_of(
        build_training_set(
            pd.DataFrame(before),
            DEFAULT_SIGNAL_WEIGHTS,
            catalogue=CATALOGUE,
            granularity=granularity,
        ),
        "L",
    )
    assert (a["item_likes"], b["item_likes"]) == (0, 1)
    assert b["like_ratio"] == pytest.approx(float(d.like_ratio(1, 0)))
    assert b["recent_media_7d"] == ["m3", "m1"]
    assert b["audio_plays_7d"] == 1 and a["audio_plays_7d"] == 0
    assert b["user_category_affinity"] == pytest.approx(a["user_category_affinity"] + 0.8)
    assert b["user_creator_affinity"] == pytest.approx(a["user_creator_affinity"] + 0.8)


@pytest.mark.integration
@pytest.mark.slow
def test_ray_builder_matches_pandas_builder(ray_local, tmp_path: Path) -> None:
    from app.config import FeedraySettings
    from data.ingest import EVENT_SCHEMA

    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        m = f"m{rng.integers(1, 4)}"
        etype = rng.choice(["media_started", "media_liked", "media_skipped", "media_completed"])
        frac = {"media_skipped": 0.1, "media_completed": 0.95}.get(etype)
        rows.append(
            ev(
                f"e{i}",
                f"u{rng.integers(0, 15)}",
                m,
                etype,
                T0 + rng.integers(0, 3 * 86_400) * S,
                f"s{rng.integers(0, 40)}",
                frac,
            )
        )
    events = pd.DataFrame(rows)
    meta = CATALOGUE.set_index("media_id")
    for col in ["creator_id", "category", "language", "duration_s", "published_at"]:
        events[col] = events["media_id"].map(meta[col])
    events = events.assign(
        enriched=True,
        playlist_id=None,
        kafka_topic="t",
        kafka_partition=0,
        kafka_offset=np.arange(len(events)),
        kafka_timestamp_ms=0,
    )
    folder = tmp_path / "store" / "date=2025-03-10" / "hour=12"
    folder.mkdir(parents=True)
    table = (
        pa.Table.from_pandas(events, preserve_index=False)
        .select(EVENT_SCHEMA.names)
        .cast(EVENT_SCHEMA)
    )
    pq.write_table(table, folder / "part.parquet")

    out = build_training_set_ray(
        FeedraySettings(state_dir=tmp_path), str(tmp_path / "store"), str(tmp_path / "ts")
    )
    got = pq.read_table(out).to_pandas().set_index("label_id").sort_index()
    expected = build_training_set(events, DEFAULT_SIGNAL_WEIGHTS).set_index("label_id").sort_index()
    assert list(got.index) == list(expected.index)
    for col in [
        "weight",
        "completion",
        "negative",
        "like_ratio",
        "play_count_24h",
        "avg_session_duration",
        "user_category_affinity",
        "trending_score",
    ]:
        assert np.allclose(got[col].astype(float), expected[col].astype(float)), col
    assert [list(v) for v in got["recent_media_7d"]] == expected["recent_media_7d"].tolist()
