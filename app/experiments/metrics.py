"""Per-user experiment metrics from exposures and engagement events (pure pandas).

The user is the randomisation unit, so everything the gate tests is a per-user count: one
row per user with the numerator and denominator of every ratio metric. An engagement event
counts for the latest exposure of the same user and item served at most the attribution
window before it (``pd.merge_asof``); events with no such exposure (search, a shared link)
are not the feed's doing and are dropped.

Input frames (one row per exposed item; ``exposure_frame`` flattens ``Exposure`` records):

- exposures: ``request_id``, ``user_id``, ``arm``, ``media_id``, ``served_at``; optional
  ``degraded`` (bool, the feed degraded), ``latency_ms`` (the feed's total latency),
  ``session_id`` (else each feed is its own session). A feed with no items has one row with
  a null ``media_id``, so it still counts as a feed.
- events: ``user_id``, ``media_id``, ``event_type``, ``timestamp``; optional ``session_id``.

Timestamps may be tz-aware datetimes or integer milliseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from app.config import get_settings
from app.schemas import EventType, Exposure

EXPOSURE_COLUMNS = ("request_id", "user_id", "arm", "media_id", "served_at")
EVENT_COLUMNS = ("user_id", "media_id", "event_type", "timestamp")
MIXED_ARM = "mixed"  # a user served by both arms (the assignment changed during the run)

# Per-impression outcomes counted once per (feed, item), by event type.
OUTCOME_EVENTS: dict[str, EventType] = {
    "starts": EventType.MEDIA_STARTED,
    "completions": EventType.MEDIA_COMPLETED,
    "dislikes": EventType.MEDIA_DISLIKED,
    "skips": EventType.MEDIA_SKIPPED,
}
COUNT_COLUMNS = ("impressions", "feeds", "sessions", "degraded_feeds", *OUTCOME_EVENTS)


@dataclass(frozen=True)
class RatioMetric:
    """A per-user ratio-of-sums metric: sum(numerator) / sum(denominator) over an arm's users."""

    name: str
    numerator: str
    denominator: str
    higher_is_better: bool
    description: str


RATIO_METRICS: dict[str, RatioMetric] = {
    m.name: m
    for m in (
        RatioMetric("ctr", "starts", "impressions", True, "starts per impression"),
        RatioMetric("completion_rate", "completions", "starts", True, "completions per start"),
        RatioMetric("session_depth", "starts", "sessions", True, "items started per session"),
        RatioMetric("dislike_rate", "dislikes", "impressions", False, "dislikes per impression"),
        RatioMetric("skip_rate", "skips", "impressions", False, "skips per impression"),
        RatioMetric("degraded_share", "degraded_feeds", "feeds", False, "degraded feeds"),
    )
}


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame lacks column(s) {missing}; has {list(frame.columns)}")


def to_epoch_ms(values: pd.Series) -> np.ndarray:
    """int64 milliseconds since the epoch from tz-aware datetimes or integer milliseconds."""
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64)
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            raise ValueError("timestamps must be timezone-aware (or integer epoch ms)")
        return ((values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(
            np.int64
        )
    raise ValueError(f"timestamps must be datetimes or integer ms, got dtype {values.dtype}")


def exposure_frame(
    exposures: Iterable[Exposure], latency_ms: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Flatten ``Exposure`` records to the exposures frame (one row per exposed item).

    ``latency_ms`` maps a request id to the feed's total latency when the caller has it.
    """
    rows: list[tuple] = []
    for exposure in exposures:
        degraded = bool(exposure.degraded)
        latency = np.nan if latency_ms is None else latency_ms.get(exposure.request_id, np.nan)
        items = exposure.items or [None]
        for item in items:
            rows.append(
                (
                    exposure.request_id,
                    exposure.user_id,
                    exposure.arm,
                    None if item is None else item.media_id,
                    -1 if item is None else item.position,
                    exposure.served_at,
                    degraded,
                    latency,
                )
            )
    columns = [*EXPOSURE_COLUMNS[:4], "position", "served_at", "degraded", "latency_ms"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True)
    return frame


def attribute_events(
    exposures: pd.DataFrame, events: pd.DataFrame, window_s: float
) -> pd.DataFrame:
    """Events joined to the latest exposure of the same user and item within ``window_s``.

    Returns the attributed events with ``request_id`` and ``arm`` of their exposure and
    ``ts_ms``; unattributed events are dropped.
    """
    _require(exposures, EXPOSURE_COLUMNS, "exposures")
    _require(events, EVENT_COLUMNS, "events")
    shown = exposures.loc[exposures["media_id"].notna(), ["request_id", "user_id", "arm"]].copy()
    shown["media_id"] = exposures.loc[shown.index, "media_id"].astype(str)
    shown["user_id"] = shown["user_id"].astype(str)
    shown["ts_ms"] = to_epoch_ms(exposures.loc[shown.index, "served_at"])
    ev = events[list(EVENT_COLUMNS)].copy()
    ev["user_id"], ev["media_id"] = ev["user_id"].astype(str), ev["media_id"].astype(str)
    ev["event_type"] = ev["event_type"].astype(str)
    ev["ts_ms"] = to_epoch_ms(events["timestamp"])
    ev = ev.drop(columns="timestamp")
    joined = pd.merge_asof(
        ev.sort_values("ts_ms", kind="stable"),
        shown.sort_values("ts_ms", kind="stable").rename(columns={"ts_ms": "served_ms"}),
        left_on="ts_ms",
        right_on="served_ms",
        by=["user_id", "media_id"],
        direction="backward",
        tolerance=int(window_s * 1000),
    )
    return joined[joined["request_id"].notna()].reset_index(drop=True)


def _user_arms(exposures: pd.DataFrame) -> pd.Series:
    """The arm of each user, ``MIXED_ARM`` for a user served by both."""
    arms = exposures.groupby("user_id")["arm"].agg(["first", "nunique"])
    return arms["first"].where(arms["nunique"] == 1, MIXED_ARM).rename("arm")


def user_metrics(
    exposures: pd.DataFrame,
    events: pd.DataFrame,
    window_s: float | None = None,
    served_before: datetime | None = None,
) -> pd.DataFrame:
    """One row per exposed user (index ``user_id``): ``arm`` and the counts of ``COUNT_COLUMNS``.

    Events are attributed within ``window_s`` (default ``experiments.attribution_window_s``).
    Outcomes count once per (feed, item): a start is an impression that was started. A
    session is the exposure's ``session_id`` when logged, else the feed request.
    ``served_before``: only exposures served before it are counted; later ones still take
    part in attribution, so an event they caused is not credited to an earlier exposure of
    the same item.
    """
    _require(exposures, EXPOSURE_COLUMNS, "exposures")
    exposures = exposures.assign(user_id=exposures["user_id"].astype(str))
    if window_s is None:
        window_s = get_settings().experiments.attribution_window_s
    attributed = attribute_events(exposures, events, window_s)
    if served_before is not None:
        counted = to_epoch_ms(exposures["served_at"]) < int(served_before.timestamp() * 1000)
        attributed = attributed[attributed["request_id"].isin(exposures.loc[counted, "request_id"])]
        exposures = exposures[counted]
    feeds = exposures.drop_duplicates("request_id")
    out = pd.DataFrame({"arm": _user_arms(exposures)})
    out["impressions"] = exposures[exposures["media_id"].notna()].groupby("user_id").size()
    out["feeds"] = feeds.groupby("user_id").size()
    session = feeds["request_id"].astype(str)
    if "session_id" in feeds.columns:
        session = feeds["session_id"].astype("string").fillna(session).astype(str)
    out["sessions"] = session.groupby(feeds["user_id"]).nunique()
    degraded = feeds["degraded"].fillna(False).astype(bool) if "degraded" in feeds else None
    out["degraded_feeds"] = 0 if degraded is None else degraded.groupby(feeds["user_id"]).sum()
    for column, event_type in OUTCOME_EVENTS.items():
        hits = attributed[attributed["event_type"] == str(event_type)]
        hits = hits.drop_duplicates(["request_id", "media_id"])
        out[column] = hits.groupby("user_id").size()
    counts = list(COUNT_COLUMNS)
    out[counts] = out[counts].fillna(0).astype(np.int64)
    out.index.name = "user_id"
    return out


def pre_period_activity(events: pd.DataFrame) -> pd.DataFrame:
    """Per-user counts of the pre-experiment window from engagement events alone.

    The CUPED covariates when no exposure log covers the pre-period: ``starts``,
    ``completions``, ``dislikes``, ``skips`` (all events, unattributed) and ``sessions``
    (distinct ``session_id``). Index ``user_id``; users with no events are absent (= 0).
    """
    _require(events, ("user_id", "event_type"), "events")
    user = events["user_id"].astype(str)
    kind = events["event_type"].astype(str)
    out = pd.DataFrame(index=pd.Index(pd.unique(user), name="user_id"))
    for column, event_type in OUTCOME_EVENTS.items():
        out[column] = (kind == str(event_type)).groupby(user).sum()
    if "session_id" in events.columns:
        out["sessions"] = events["session_id"].groupby(user).nunique()
    return out.fillna(0).astype(np.int64)


def feed_latencies(exposures: pd.DataFrame) -> pd.DataFrame | None:
    """One row per feed with a latency (``user_id``, ``arm``, ``latency_ms``); None if none."""
    if "latency_ms" not in exposures.columns:
        return None
    feeds = exposures.drop_duplicates("request_id")
    feeds = feeds[feeds["latency_ms"].notna()]
    if feeds.empty:
        return None
    return pd.DataFrame(
        {
            "user_id": feeds["user_id"].astype(str).to_numpy(),
            "arm": feeds["arm"].to_numpy(),
            "latency_ms": feeds["latency_ms"].to_numpy(np.float64),
        }
    )
