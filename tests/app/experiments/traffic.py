"""Simulated canary traffic as wire messages (not a test module): ``Exposure`` records of served
feeds and the engagement events that followed them, for the end-to-end evaluation tests.

Users are split by the real arm hash (``assign_arm``) and differ in their own start and
completion propensities (beta), so a user's impressions are correlated. A canary ``ctr_lift``
multiplies the canary users' start propensity. The pre-period serves everyone the champion
with the same propensities (fresh draws): CUPED's covariates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import orjson

from app.experiments.assignment import assign_arm
from app.schemas import ExposedItem, Exposure

N_ITEMS, FEED_SIZE = 300, 8
VERSIONS = {
    "champion": {"retrieval": "3", "ranking": "3"},
    "canary": {"retrieval": "4", "ranking": "4"},
}


@dataclass
class Traffic:
    """(key, value) messages for the exposures and the engagement topics."""

    exposures: list[tuple[bytes, bytes]] = field(default_factory=list)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)


def _event(kind: str, user: str, media: str, at: datetime, seq: int, **extra) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{seq}",
            "event_type": kind,
            "user_id": user,
            "media_id": media,
            "content_type": "VIDEO",
            "timestamp": at.isoformat(),
            **extra,
        }
    )


def simulate_traffic(
    seed: int,
    n_users: int,
    *,
    start: datetime,
    hours: float,
    canary_share: float,
    experiment: str,
    ctr_lift: float = 0.0,
    pre_hours: float = 0.0,
    feeds_per_user: float = 4.0,
    canary_pool: np.ndarray | None = None,
) -> Traffic:
    """Feeds served in ``[start, start + hours)`` (and a champion-only pre-period of
    ``pre_hours`` before ``start``), each item's start / completion / skip / dislike events a
    few seconds to minutes after it was served (inside the period). ``canary_pool``: the item
    indices the canary draws its feeds from (default all: a canary with no exposure bias)."""
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(n_users)]
    canary = np.array([assign_arm(u, canary_share, experiment) == "canary" for u in users])
    ctr = rng.beta(0.15 * 8, 0.85 * 8, n_users)
    completion = rng.beta(0.4 * 6, 0.6 * 6, n_users)
    out, seq = Traffic(), 0

    def emit(user: str, kind: str, media: str, at: datetime, **extra) -> None:
        nonlocal seq
        seq += 1
        out.events.append((user.encode(), _event(kind, user, media, at, seq, **extra)))

    def period(begin: datetime, length_h: float, treated: np.ndarray) -> None:
        nonlocal seq
        feeds = 1 + rng.poisson(feeds_per_user - 1, n_users)
        for u, user in enumerate(users):
            arm = "canary" if treated[u] else "champion"
            p_start = min(1.0, ctr[u] * (1.0 + ctr_lift * treated[u]))
            for _ in range(feeds[u]):
                served = begin + timedelta(seconds=float(rng.uniform(0, length_h * 3600 - 900)))
                pool = canary_pool if treated[u] and canary_pool is not None else N_ITEMS
                items = rng.choice(pool, FEED_SIZE, replace=False)
                seq += 1
                exposure = Exposure(
                    request_id=f"r{seq}",
                    user_id=user,
                    arm=arm,
                    model_versions=VERSIONS[arm],
                    items=[
                        ExposedItem(media_id=f"m{i}", position=p, score=1.0, source="retrieval")
                        for p, i in enumerate(items)
                    ],
                    served_at=served,
                    latency_ms=40.0 + seq % 7,  # the same spread in both arms
                    experiment=experiment,
                )
                out.exposures.append((user.encode(), exposure.model_dump_json().encode()))
                for i in items:
                    media, at = f"m{i}", served + timedelta(seconds=float(rng.uniform(1, 600)))
                    if rng.random() < p_start:
                        emit(user, "media_started", media, at)
                        if rng.random() < completion[u]:
                            later = at + timedelta(seconds=120)
                            emit(user, "media_completed", media, later, consumed_fraction=0.95)
                    elif rng.random() < 0.1:
                        emit(user, "media_skipped", media, at)
                    if rng.random() < 0.01:
                        emit(user, "media_disliked", media, at)

    if pre_hours:
        period(start - timedelta(hours=pre_hours), pre_hours, np.zeros(n_users, dtype=bool))
    period(start, hours, canary)
    return out
