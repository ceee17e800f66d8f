"""The one definition of every feature, shared by serving (Redis) and training (Parquet).

Online and offline stores keep only raw counts (per item, per user, per time bucket);
the features themselves are these vectorised functions over those counts, so the value a
model sees in training is computed by exactly the code that computes it at serving time.
Every function takes numpy arrays (or scalars) and broadcasts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.schemas import EventType, PreferredContentType

HOUR_S = 3_600
DAY_S = 86_400
WINDOW_1H_S = HOUR_S
WINDOW_24H_S = DAY_S
WINDOW_7D_S = 7 * DAY_S

# Bucket widths for the expiring windows: views_1h in 5-minute buckets, play_count_24h in
# hourly buckets, the 7-day user windows in daily buckets.
BUCKET_1H_S = 300
BUCKET_24H_S = HOUR_S
BUCKET_7D_S = DAY_S

PREFERRED_TYPE_SHARE = (
    0.7  # a user is VIDEO (AUDIO) first when >= 70 % of recent plays are video (audio)
)
RECENT_MEDIA_LIMIT = 200  # recent_media_7d keeps at most this many items, newest first
TOP_CATEGORIES_K = 3

# Smoothing priors: a new item starts at the catalogue-wide prior instead of 0/0.
LIKE_PRIOR = (1.0, 1.0)  # (likes, dislikes) pseudo-counts -> 0.5 for an unseen item
COMPLETION_PRIOR = (1.0, 3.0)  # (completions, non-completions) pseudo-counts -> 0.25

# Which raw item counter each event increments. media_started is a play (a view).
ITEM_COUNTER_OF_EVENT: dict[EventType, str] = {
    EventType.MEDIA_STARTED: "starts",
    EventType.MEDIA_COMPLETED: "completes",
    EventType.MEDIA_LIKED: "likes",
    EventType.MEDIA_DISLIKED: "dislikes",
    EventType.MEDIA_SKIPPED: "skips",
    EventType.MEDIA_SHARED: "shares",
    EventType.MEDIA_ADDED_TO_PLAYLIST: "playlist_adds",
    EventType.MEDIA_REPLAY: "replays",
    EventType.MEDIA_PAUSED_EARLY: "paused_early",
    EventType.SUBSCRIPTION_TO_CREATOR: "subscriptions",
}
ITEM_COUNTERS: tuple[str, ...] = tuple(ITEM_COUNTER_OF_EVENT.values())
PLAY_EVENT = EventType.MEDIA_STARTED

# Strong engagement (the ranker's "strong" head) and positive engagement (a completion or a
# strong event: what the user history ``u_hist`` is made of). One definition for the online
# store (the ``:pos`` zset), training (``app.features.offline``) and the model config.
STRONG_EVENTS: tuple[EventType, ...] = (
    EventType.MEDIA_LIKED,
    EventType.MEDIA_SHARED,
    EventType.MEDIA_ADDED_TO_PLAYLIST,
    EventType.MEDIA_REPLAY,
    EventType.SUBSCRIPTION_TO_CREATOR,
)
POSITIVE_EVENTS: tuple[EventType, ...] = (EventType.MEDIA_COMPLETED, *STRONG_EVENTS)
NEGATIVE_EVENTS: tuple[EventType, ...] = (
    EventType.MEDIA_SKIPPED,
    EventType.MEDIA_DISLIKED,
    EventType.MEDIA_PAUSED_EARLY,
)

# The label weight each engagement event carries (``EventSettings.signal_weights``).
DEFAULT_SIGNAL_WEIGHTS: dict[EventType, float] = {
    EventType.MEDIA_COMPLETED: 1.0,
    EventType.MEDIA_REPLAY: 0.8,
    EventType.MEDIA_LIKED: 0.8,
    EventType.MEDIA_SHARED: 0.8,
    EventType.MEDIA_ADDED_TO_PLAYLIST: 0.7,
    EventType.SUBSCRIPTION_TO_CREATOR: 0.7,
    EventType.MEDIA_STARTED: 0.1,
    EventType.MEDIA_PAUSED_EARLY: -0.2,
    EventType.MEDIA_SKIPPED: -0.4,
    EventType.MEDIA_DISLIKED: -0.5,
}

# Events whose consumed_fraction x duration counts as time spent (for avg_session_duration).
TIMED_EVENTS = frozenset(
    {EventType.MEDIA_COMPLETED, EventType.MEDIA_PAUSED_EARLY, EventType.MEDIA_SKIPPED}
)

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


def bucket_of(timestamp_s: ArrayLike, bucket_s: int) -> npt.NDArray[np.int64]:
    """Index of the time bucket holding each timestamp (seconds since the epoch)."""
    return np.floor_divide(np.asarray(timestamp_s, dtype=np.int64), bucket_s)


def windowed_sum(
    bucket_ids: ArrayLike, counts: ArrayLike, now_s: ArrayLike, window_s: int, bucket_s: int
) -> FloatArray:
    """Sum of ``counts`` whose bucket lies in the window ending at ``now_s``.

    ``bucket_ids`` and ``counts``: [..., n_buckets] (a ring of buckets, any order; empty
    slots have count 0). A bucket counts when it is one of the ``window_s / bucket_s``
    most recent buckets up to and including the current one, so counts really expire.
    Returns [...].
    """
    ids = np.asarray(bucket_ids, dtype=np.int64)
    age = np.expand_dims(bucket_of(now_s, bucket_s), -1) - ids
    live = (age >= 0) & (age < window_s // bucket_s)
    return np.where(live, np.asarray(counts, dtype=np.float64), 0.0).sum(axis=-1)


def window_start_s(now_s: ArrayLike, window_s: int, bucket_s: int) -> npt.NDArray[np.int64]:
    """First second of the bucketed window ending at ``now_s`` (as ``windowed_sum`` counts it)."""
    return (bucket_of(now_s, bucket_s) - (window_s // bucket_s) + 1) * bucket_s


def last_second_before(now_s: ArrayLike) -> npt.NDArray[np.int64]:
    """The last whole second strictly before ``now_s`` (``ceil(now_s) - 1``).

    The user windows are half-open, ``[.., now)`` like training's ``[T - 7 d, T)``: they
    are read with ``windowed_sum(..., last_second_before(now), ...)``. Timestamps are
    floored to whole seconds when they are bucketed, so an event counts iff it happened
    before ``now``. Only when ``now`` is exactly on a bucket boundary does this differ from
    reading at ``now`` itself: at midnight ``T`` the 7 daily buckets are then the 7 full days
    ``[T - 7 d, T)`` (training's window) instead of the 6 days before ``T`` plus ``T``'s
    still empty day.
    """
    return np.ceil(np.asarray(now_s, dtype=np.float64)).astype(np.int64) - 1


def like_ratio(likes: ArrayLike, dislikes: ArrayLike) -> FloatArray:
    """Beta-smoothed share of likes among likes + dislikes."""
    a, b = LIKE_PRIOR
    likes = np.asarray(likes, dtype=np.float64)
    return (likes + a) / (likes + np.asarray(dislikes, dtype=np.float64) + a + b)


def completion_rate(completes: ArrayLike, starts: ArrayLike) -> FloatArray:
    """Beta-smoothed share of plays that reached > 90 % (completions over starts)."""
    a, b = COMPLETION_PRIOR
    completes = np.asarray(completes, dtype=np.float64)
    starts = np.maximum(np.asarray(starts, dtype=np.float64), completes)
    return (completes + a) / (starts + a + b)


def publish_age_hours(published_at_s: ArrayLike, now_s: ArrayLike) -> FloatArray:
    """Hours since publication, never negative."""
    age = (
        np.asarray(now_s, dtype=np.float64) - np.asarray(published_at_s, dtype=np.float64)
    ) / HOUR_S
    return np.maximum(age, 0.0)


def preferred_content_type(video_plays: ArrayLike, audio_plays: ArrayLike) -> npt.NDArray[np.str_]:
    """VIDEO / AUDIO when one type has at least ``PREFERRED_TYPE_SHARE`` of plays, else MIXED."""
    video = np.asarray(video_plays, dtype=np.float64)
    audio = np.asarray(audio_plays, dtype=np.float64)
    total = video + audio
    share = np.divide(video, total, out=np.full_like(total, 0.5), where=total > 0)
    return np.where(
        share >= PREFERRED_TYPE_SHARE,
        PreferredContentType.VIDEO.value,
        np.where(
            share <= 1 - PREFERRED_TYPE_SHARE,
            PreferredContentType.AUDIO.value,
            PreferredContentType.MIXED.value,
        ),
    )


def consumed_seconds(event_type: str, consumed_fraction: float | None, duration_s: float) -> float:
    """Time spent that one event stands for (only events that report a consumed fraction)."""
    if event_type not in TIMED_EVENTS or consumed_fraction is None:
        return 0.0
    return float(consumed_fraction) * float(duration_s)


def avg_session_duration(consumed_s: ArrayLike, sessions: ArrayLike) -> FloatArray:
    """Mean seconds consumed per session over the window (0 for no sessions)."""
    consumed = np.asarray(consumed_s, dtype=np.float64)
    count = np.asarray(sessions, dtype=np.float64)
    return np.divide(consumed, count, out=np.zeros_like(consumed), where=count > 0)


def top_k_keys(counts: dict[str, float], k: int = TOP_CATEGORIES_K) -> list[str]:
    """The ``k`` keys with the largest counts (ties broken by key, so results are stable)."""
    return [
        key
        for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        if value > 0
    ]


def argmax_key(counts: dict[str, float]) -> str | None:
    """The key with the largest count (e.g. preferred_language), or None when empty."""
    top = top_k_keys(counts, 1)
    return top[0] if top else None


# Trending: views_1h x recency_weight x engagement_multiplier.
TRENDING_HALF_LIFE_H = 24.0  # recency_weight halves every day since publication
TRENDING_ENGAGEMENT_CAP = 3.0


def recency_weight(age_hours: ArrayLike) -> FloatArray:
    """Exponential decay with a 24 h half-life: fresh items outrank old ones with equal views."""
    return np.power(0.5, np.asarray(age_hours, dtype=np.float64) / TRENDING_HALF_LIFE_H)


def engagement_multiplier(completion: ArrayLike, likes: ArrayLike) -> FloatArray:
    """1 + smoothed completion rate + smoothed like ratio, capped: views that end well count more.

    ``completion`` and ``likes`` are the smoothed rates from ``completion_rate`` and
    ``like_ratio``; an item nobody finishes and everybody dislikes stays near 1.
    """
    value = 1.0 + np.asarray(completion, dtype=np.float64) + np.asarray(likes, dtype=np.float64)
    return np.minimum(value, TRENDING_ENGAGEMENT_CAP)


def trending_score(
    views_1h: ArrayLike, age_hours: ArrayLike, completion: ArrayLike, likes: ArrayLike
) -> FloatArray:
    """The seed's trending_score = views_1h x recency_weight x engagement_multiplier."""
    return (
        np.asarray(views_1h, dtype=np.float64)
        * recency_weight(age_hours)
        * engagement_multiplier(completion, likes)
    )
