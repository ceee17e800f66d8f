"""Per-user metrics: attribution of events to exposures, counts per user, frame contracts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from app.config import FeedraySettings
from app.experiments import metrics
from app.experiments.metrics import (
    MIXED_ARM,
    attribute_events,
    exposure_frame,
    feed_latencies,
    pre_period_activity,
    user_metrics,
)
from app.schemas import ExposedItem, Exposure

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _exposure(request: str, user: str, arm: str, items: list[str], at: datetime, **kw) -> Exposure:
    return Exposure(
        request_id=request,
        user_id=user,
        arm=arm,
        model_versions={"ranking": "3"},
        items=[
            ExposedItem(media_id=m, position=p, score=1.0, source="retrieval")
            for p, m in enumerate(items)
        ],
        served_at=at,
        **kw,
    )


def _events(rows: list[tuple[str, str, str, datetime]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "media_id", "event_type", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def test_an_event_counts_for_the_latest_earlier_exposure_of_the_same_user_and_item() -> None:
    exposures = exposure_frame(
        [
            _exposure("r1", "u1", "canary", ["m1", "m2"], T0),
            _exposure("r2", "u1", "canary", ["m1"], T0 + 2 * HOUR),
            _exposure("r3", "u2", "champion", ["m1"], T0),
        ]
    )
    events = _events(
        [
            ("u1", "m1", "media_started", T0 + timedelta(minutes=1)),  # -> r1
            ("u1", "m1", "media_started", T0 + 2 * HOUR + timedelta(seconds=5)),  # -> r2
            ("u1", "m2", "media_started", T0 - timedelta(minutes=1)),  # before any exposure
            ("u1", "m3", "media_started", T0 + timedelta(minutes=1)),  # never shown to u1
            ("u2", "m2", "media_started", T0 + timedelta(minutes=1)),  # m2 shown to u1 only
            ("u2", "m1", "media_started", T0 + 7 * HOUR),  # outside a 6 h window
        ]
    )
    attributed = attribute_events(exposures, events, window_s=6 * 3600)
    assert attributed["request_id"].tolist() == ["r1", "r2"]
    assert set(attributed["arm"]) == {"canary"}


def test_only_exposures_before_the_window_end_count_but_later_ones_keep_their_events() -> None:
    end = T0 + HOUR
    exposures = exposure_frame(
        [
            _exposure("r1", "u1", "canary", ["m1", "m2"], T0),
            _exposure("r2", "u1", "canary", ["m1"], end + timedelta(minutes=5)),
            _exposure("r3", "u2", "champion", ["m1"], end + timedelta(minutes=1)),
        ]
    )
    events = _events(
        [
            ("u1", "m2", "media_started", end + timedelta(minutes=30)),  # after the end -> r1
            ("u1", "m1", "media_started", end + timedelta(minutes=6)),  # -> r2, not counted
        ]
    )
    users = user_metrics(exposures, events, window_s=6 * 3600, served_before=end)
    assert users.index.tolist() == ["u1"]  # u2 was only served after the window
    assert users.loc["u1", ["impressions", "feeds", "starts"]].tolist() == [2, 1, 1]
    everything = user_metrics(exposures, events, window_s=6 * 3600)
    assert everything.loc["u1", ["impressions", "starts"]].tolist() == [3, 2]


def test_user_metrics_count_each_outcome_once_per_feed_and_item() -> None:
    exposures = exposure_frame(
        [
            _exposure("r1", "u1", "canary", ["m1", "m2", "m3"], T0, degraded=["ranking_timeout"]),
            _exposure("r2", "u1", "canary", ["m4"], T0 + HOUR),
            _exposure("r3", "u2", "champion", [], T0),  # an empty feed is still a feed
        ]
    )
    minute = timedelta(minutes=1)
    events = _events(
        [
            ("u1", "m1", "media_started", T0 + minute),
            ("u1", "m1", "media_started", T0 + 2 * minute),  # a second start of the same slot
            ("u1", "m1", "media_completed", T0 + 9 * minute),
            ("u1", "m2", "media_started", T0 + 10 * minute),
            ("u1", "m2", "media_skipped", T0 + 11 * minute),
            ("u1", "m3", "media_disliked", T0 + 12 * minute),
            ("u1", "m4", "media_started", T0 + HOUR + minute),
        ]
    )
    users = user_metrics(exposures, events, window_s=3600)
    u1, u2 = users.loc["u1"], users.loc["u2"]
    assert (u1.arm, u1.impressions, u1.feeds, u1.sessions, u1.degraded_feeds) == (
        "canary",
        4,
        2,
        2,
        1,
    )
    assert (u1.starts, u1.completions, u1.skips, u1.dislikes) == (3, 1, 1, 1)
    assert (u2.arm, u2.impressions, u2.feeds, u2.starts) == ("champion", 0, 1, 0)


def test_sessions_come_from_the_exposure_log_when_it_has_them() -> None:
    exposures = exposure_frame(
        [
            _exposure("r1", "u1", "canary", ["m1"], T0),
            _exposure("r2", "u1", "canary", ["m2"], T0 + HOUR),
            _exposure("r3", "u1", "canary", ["m3"], T0 + 2 * HOUR),
        ]
    )
    exposures["session_id"] = ["s1", "s1", None]  # r3 has none: its own session
    users = user_metrics(exposures, _events([]), window_s=60)
    assert users.loc["u1", "sessions"] == 2


def test_a_user_served_by_both_arms_is_marked_mixed() -> None:
    exposures = exposure_frame(
        [
            _exposure("r1", "u1", "canary", ["m1"], T0),
            _exposure("r2", "u1", "champion", ["m1"], T0 + HOUR),
        ]
    )
    assert user_metrics(exposures, _events([]), window_s=60).loc["u1", "arm"] == MIXED_ARM


def test_integer_millisecond_timestamps_work_like_datetimes() -> None:
    exposures = exposure_frame([_exposure("r1", "u1", "canary", ["m1"], T0)])
    events = _events([("u1", "m1", "media_started", T0 + timedelta(seconds=30))])
    as_ms = events.assign(timestamp=int((T0 + timedelta(seconds=30)).timestamp() * 1000))
    with_dt = user_metrics(exposures, events, window_s=60)
    with_ms = user_metrics(exposures, as_ms, window_s=60)
    pd.testing.assert_frame_equal(with_dt, with_ms)
    assert with_ms.loc["u1", "starts"] == 1


def test_missing_columns_and_naive_timestamps_are_clear_errors() -> None:
    exposures = exposure_frame([_exposure("r1", "u1", "canary", ["m1"], T0)])
    with pytest.raises(ValueError, match=r"events frame lacks column\(s\) \['timestamp'\]"):
        user_metrics(exposures, pd.DataFrame(columns=["user_id", "media_id", "event_type"]), 60)
    naive = _events([("u1", "m1", "media_started", T0)])
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        user_metrics(exposures, naive, 60)


def test_feed_latencies_one_row_per_feed_and_none_when_unlogged() -> None:
    records = [
        _exposure("r1", "u1", "canary", ["m1", "m2"], T0),
        _exposure("r2", "u2", "champion", ["m1"], T0),
    ]
    assert feed_latencies(exposure_frame(records)) is None
    latency = feed_latencies(exposure_frame(records, latency_ms={"r1": 41.0, "r2": 12.5}))
    assert latency.to_dict("list") == {
        "user_id": ["u1", "u2"],
        "arm": ["canary", "champion"],
        "latency_ms": [41.0, 12.5],
    }


def test_pre_period_activity_counts_events_per_user() -> None:
    events = _events(
        [
            ("u1", "m1", "media_started", T0),
            ("u1", "m2", "media_started", T0),
            ("u1", "m2", "media_completed", T0),
            ("u2", "m1", "media_disliked", T0),
        ]
    )
    events["session_id"] = ["s1", "s1", "s2", None]
    pre = pre_period_activity(events)
    assert pre.loc["u1"].to_dict() == {
        "starts": 2,
        "completions": 1,
        "dislikes": 0,
        "skips": 0,
        "sessions": 2,
    }
    assert pre.loc["u2", "dislikes"] == 1 and pre.loc["u2", "sessions"] == 0


@pytest.mark.parametrize(("window_s", "starts"), [(60.0, 0), (600.0, 1)])
def test_user_metrics_attribute_within_the_configured_window(
    monkeypatch: pytest.MonkeyPatch, window_s: float, starts: int
) -> None:
    settings = FeedraySettings(experiments={"attribution_window_s": window_s})
    monkeypatch.setattr(metrics, "get_settings", lambda: settings)
    exposures = exposure_frame([_exposure("r1", "u1", "canary", ["m1"], T0)])
    events = _events([("u1", "m1", "media_started", T0 + timedelta(minutes=5))])
    assert user_metrics(exposures, events).loc["u1", "starts"] == starts
