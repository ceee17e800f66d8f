"""Typed records of the online store and their decoders from raw Redis replies.

``UserFeatures`` is the one record of a user's features, from the store to the models'
columns; items have ``OnlineItemFeatures`` (N items' features at a read time) and
``OnlineItemMeta`` (one item's static record). The serving stages' item arrays are
``app.serving.catalogue.CatalogueColumns`` (catalogue attributes, no online state).

Features are computed from the raw counts at read time with ``app.features.definitions`` (the
one definition shared with training), so windows expire without any background job.

Feature definitions that ``definitions.py`` leaves open (documented here, shared with the
offline store):

* plays = ``media_started`` events; per-user windows are 7 days of daily buckets, read as of
  ``definitions.last_second_before(now)`` so that they are half-open, ``[.., now)``: at a
  midnight ``T`` they are exactly the 7 days ``[T - 7 d, T)`` that ``train.data.user_features``
  uses (at other times: the current day so far and the 6 days before it; a 7-slot ring of
  daily buckets cannot hold more).
* ``recent_media_7d``: distinct media the user started in ``(now - 7 d, now]``, newest first,
  at most ``RECENT_MEDIA_LIMIT``.
* ``recent_positive_7d``: distinct media the user positively engaged with
  (``definitions.POSITIVE_EVENTS``) in the 7-day user window, ``[first second of its first
  daily bucket, now)`` (the days the 7-day counts cover; at a midnight ``T``: ``[T - 7 d, T)``),
  newest first by their latest such event (ms), at most ``RECENT_MEDIA_LIMIT``; equal times:
  larger media id first, as Redis orders equal scores (``train.data`` breaks ties the same
  way). This is the models' ``u_hist``.
* ``plays_7d`` / ``video_plays_7d`` / ``completes_7d`` / ``likes_7d`` / ``dislikes_7d``:
  counts of ``media_started`` (all / of VIDEO items, by catalogue type), ``media_completed``,
  ``media_liked``, ``media_disliked`` over the 7-day user window (the models' ``u_dense``).
* ``top_categories_7d`` / ``preferred_language``: ``top_k_keys`` / ``argmax_key`` over the
  user's 7-day plays per item category / item language (from the catalogue).
* ``preferred_content_type``: ``preferred_content_type(video plays 7d, audio plays 7d)``.
* ``avg_session_duration``: ``avg_session_duration(seconds consumed 7d, sessions 7d)``; seconds
  consumed = ``consumed_seconds(event, fraction, catalogue duration)``; a session counts once,
  on the day its first event was seen.
* ``subscriber_count`` (user): distinct creators the user subscribed to (lifetime).
* ``creator_subscriber_count`` (item): distinct users subscribed to the item's creator (lifetime).
* ``like_ratio`` / ``completion_rate``: the smoothed ratios over the item's lifetime counters.
* ``play_count_24h`` / ``views_1h``: ``windowed_sum`` of starts over the hourly / 5-min rings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.features import definitions as d
from app.features.layout import (
    CONTENT_TYPE_NAMES,
    FLAG_CATALOGUED,
    ITEM_LAYOUT,
    USER_AFFINITY_LAYOUT,
    USER_CORE_LAYOUT,
)
from app.schemas import PreferredContentType

Names = Callable[[str, np.ndarray], np.ndarray]  # (vocabulary kind, codes) -> names


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class UserFeatures:
    """One user's online features: what the store decodes, what the serving stages carry
    (pickled across Serve hops, cached per replica), what ``encode_online_users`` encodes.

    Every field but ``user_id`` defaults to the values of a user the store never saw (a
    cold-start user, or the defaults when the store cannot be read).
    """

    user_id: str
    recent_media_7d: tuple[str, ...] = ()  # started in 7 days, newest first: never served again
    top_categories_7d: tuple[str, ...] = ()
    avg_session_duration: float = 0.0
    preferred_language: str | None = None
    preferred_content_type: str = PreferredContentType.MIXED.value
    subscriber_count: int = 0
    plays_7d: float = 0.0
    sessions_7d: float = 0.0
    video_plays_7d: float = 0.0
    completes_7d: float = 0.0
    likes_7d: float = 0.0
    dislikes_7d: float = 0.0
    recent_positive_7d: tuple[str, ...] = ()  # newest first (the models' u_hist)

    @property
    def known(self) -> bool:
        """False for a cold-start user: no plays and no recent items in the 7-day window."""
        return self.plays_7d > 0 or bool(self.recent_media_7d)


@dataclass
class OnlineItemFeatures:
    """Online features of N items decoded from their packed Redis records at a read time
    (arrays of length N, in request order; ``raw`` keeps the records' lifetime counters)."""

    media_id: list[str]
    found: np.ndarray  # bool: the item is in the catalogue
    play_count_24h: np.ndarray
    views_1h: np.ndarray
    like_ratio: np.ndarray
    completion_rate: np.ndarray
    category: np.ndarray  # object (str)
    language: np.ndarray  # object (str)
    duration: np.ndarray
    content_type: np.ndarray  # object ("VIDEO" / "AUDIO" / "")
    creator_subscriber_count: np.ndarray
    publish_age_hours: np.ndarray
    raw: np.ndarray = field(repr=False, default=None)  # the decoded packed records

    def __len__(self) -> int:
        return len(self.media_id)


@dataclass
class OnlineItemMeta:
    """The static part of one item's Redis record, vocabulary-coded as stored (what the
    collector enriches events with and the fallback lists are described by)."""

    media_id: str
    creator: int  # vocabulary code
    category: str
    language: str
    content_type: str
    duration_s: float
    published_at_s: float


def _int_array(values: list[Any]) -> np.ndarray:
    """Redis integer replies (bytes or None) -> int64 array."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    return np.array([v or b"0" for v in values]).astype(np.int64)


_CORE_SERIES = tuple(f"d7_{name}" for name, _ in USER_CORE_LAYOUT.rings[0].series)


def user_features_from_raw(
    user_id: str,
    fields: dict[bytes, bytes],
    recent: list[bytes],
    subs: int,
    now: float,
    positive: list[bytes] | None = None,
) -> UserFeatures:
    """Decode a user's hash (core + affinity rings) into features with ``definitions``.

    The 7-day windows are read as of ``last_second_before(now)`` (half-open, see the
    module docstring); ``positive`` is the ``:pos`` zset already cut to that window.
    """
    core_blob = fields.get(b"core")
    core, _ = USER_CORE_LAYOUT.decode([core_blob])
    win = (d.last_second_before(now), d.WINDOW_7D_S, d.BUCKET_7D_S)
    # every series of the core ring in one windowed_sum: [n_series, 7] -> [n_series]
    series = np.stack([core[n][0] for n in _CORE_SERIES]).astype(np.float64)
    sums = d.windowed_sum(core["d7_id"][0], series, *win)
    c = dict(zip(_CORE_SERIES, sums.tolist(), strict=True))
    video, audio, consumed, sessions = (
        c["d7_video"],
        c["d7_audio"],
        c["d7_consumed_s"],
        c["d7_sessions"],
    )
    names = [k for k in fields if k != b"core"]
    cats: dict[str, float] = {}
    langs: dict[str, float] = {}
    if names:
        rings, _ = USER_AFFINITY_LAYOUT.decode([fields[k] for k in names])
        plays = d.windowed_sum(rings["d7_id"], rings["d7_n"], *win).tolist()
        for k, v in zip(names, plays, strict=True):
            k = _s(k)
            if k.startswith("cat:"):
                cats[k[4:]] = v
            elif k.startswith("lang:"):
                langs[k[5:]] = v
    return UserFeatures(
        user_id=user_id,
        recent_media_7d=tuple(_s(m) for m in recent),
        top_categories_7d=tuple(d.top_k_keys(cats)),
        avg_session_duration=float(d.avg_session_duration(consumed, sessions)),
        preferred_language=d.argmax_key(langs),
        preferred_content_type=str(d.preferred_content_type(video, audio)),
        subscriber_count=int(subs),
        plays_7d=video + audio,
        sessions_7d=sessions,
        video_plays_7d=video,
        completes_7d=c["d7_completes"],
        likes_7d=c["d7_likes"],
        dislikes_7d=c["d7_dislikes"],
        recent_positive_7d=tuple(_s(m) for m in positive or ()),
    )


def item_features_from_raw(
    media_ids: list[str],
    blobs: list[bytes | None],
    counts: list[Any],
    now: float,
    names: Names,
) -> OnlineItemFeatures:
    """Decode N packed item records and their creators' counts into features at ``now``."""
    rec, found = ITEM_LAYOUT.decode(blobs)
    found &= (rec["flags"] & FLAG_CATALOGUED) > 0
    creator_subs = _int_array(counts)
    return OnlineItemFeatures(
        media_id=list(media_ids),
        found=found,
        play_count_24h=d.windowed_sum(
            rec["h24_id"], rec["h24_starts"], now, d.WINDOW_24H_S, d.BUCKET_24H_S
        ),
        views_1h=d.windowed_sum(rec["m5_id"], rec["m5_starts"], now, d.WINDOW_1H_S, d.BUCKET_1H_S),
        like_ratio=d.like_ratio(rec["likes"], rec["dislikes"]),
        completion_rate=d.completion_rate(rec["completes"], rec["starts"]),
        category=names("category", rec["category"].astype(np.int64)),
        language=names("language", rec["language"].astype(np.int64)),
        duration=rec["duration_s"].astype(np.float64),
        content_type=CONTENT_TYPE_NAMES[rec["content_type"].astype(np.int64)],
        creator_subscriber_count=creator_subs,
        publish_age_hours=np.where(found, d.publish_age_hours(rec["published_at_s"], now), 0.0),
        raw=rec,
    )
