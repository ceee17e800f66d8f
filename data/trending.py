"""Trending lists: trending_score = views_1h x recency_weight x engagement_multiplier.

Every ``settings.trending.refresh_interval_s`` (``refresh_trending(settings, now)`` for one
refresh) the items played in the current and the previous clock hour (the collector keeps a
per-hour "active items" set, ``fr:active:<hour>``, so nothing scans the whole catalogue) are
read in pipelined MGET chunks, scored with ``app.features.definitions.trending_score`` over
their packed counters (views_1h = ``windowed_sum`` of the 5-minute starts ring; completion and
like ratios smoothed as in the item features) and written as sorted sets:

* ``fr:trending:all``                 every scored item
* ``fr:trending:t:<VIDEO|AUDIO>``      one content type
* ``fr:trending:l:<language>``         one language
* ``fr:trending:t:<type>:l:<language>`` both

Each list is built under a temporary key (TTL ``temp_ttl_s``, so an interrupted refresh
leaves nothing behind) and swapped in with ``RENAME`` + ``PERSIST`` inside one MULTI/EXEC,
so readers see either the old lists or the new ones, never a half-built one, and a live
list never expires. A list this refresh found no items for keeps its previous contents:
an empty refresh never replaces a non-empty list.

The catalogue upsert also keeps ``fr:newest:t:<VIDEO|AUDIO>`` (score = publication time,
``newest_list_length`` kept): the serving path's last fallback when trending is empty.
Key names and readers: ``app.features.trending``.
"""

from __future__ import annotations

import sys
import time
import uuid

import numpy as np
import typer
from pydantic import BaseModel

from app.config import FeedraySettings, TrendingSettings, get_settings
from app.features import definitions as d
from app.features.layout import CONTENT_TYPE_NAMES, FLAG_CATALOGUED, ITEM_LAYOUT
from app.features.online_store import OnlineStore


class TrendingReport(BaseModel):
    now: float
    candidates: int
    scored: int
    lists: dict[str, int]
    seconds: float


def record_newest(
    store: OnlineStore,
    media_ids: list[str],
    content_types: list[str],
    published_s: np.ndarray,
    keep: int,
) -> None:
    """Add items to their type's newest list and trim it to the ``keep`` newest (one round trip)."""
    by_type: dict[str, dict[str, float]] = {}
    for media_id, ctype, ts in zip(media_ids, content_types, published_s, strict=True):
        by_type.setdefault(str(ctype), {})[media_id] = float(ts)
    pipe = store.client.pipeline(transaction=False)
    for ctype, members in by_type.items():
        pipe.zadd(store.keys.newest(ctype), members)
        pipe.zremrangebyrank(store.keys.newest(ctype), 0, -keep - 1)
    pipe.execute()


def score_items(
    store: OnlineStore, media_ids: list[str], now: float, chunk: int = 5_000
) -> dict[str, np.ndarray]:
    """Trending scores and (content type, language) of ``media_ids`` from their packed records."""
    scores, ctypes, langs = [], [], []
    for lo in range(0, len(media_ids), chunk):
        ids = media_ids[lo : lo + chunk]
        rec, found = ITEM_LAYOUT.decode(store.client.mget([store.keys.item(m) for m in ids]))
        found &= (rec["flags"] & FLAG_CATALOGUED) > 0
        views = d.windowed_sum(rec["m5_id"], rec["m5_starts"], now, d.WINDOW_1H_S, d.BUCKET_1H_S)
        score = d.trending_score(
            views,
            d.publish_age_hours(rec["published_at_s"], now),
            d.completion_rate(rec["completes"], rec["starts"]),
            d.like_ratio(rec["likes"], rec["dislikes"]),
        )
        scores.append(np.where(found, score, 0.0))
        ctypes.append(CONTENT_TYPE_NAMES[rec["content_type"].astype(np.int64)])
        langs.append(store.names("language", rec["language"].astype(np.int64)))
    if not scores:
        empty = np.zeros(0)
        return {
            "score": empty,
            "content_type": empty.astype(object),
            "language": empty.astype(object),
        }
    return {
        "score": np.concatenate(scores),
        "content_type": np.concatenate(ctypes),
        "language": np.concatenate(langs),
    }


def refresh_trending(
    settings: FeedraySettings,
    now: float | None = None,
    *,
    store: OnlineStore | None = None,
    config: TrendingSettings | None = None,
) -> TrendingReport:
    """Recompute every trending list once (atomically replaced; lists left empty are kept)."""
    started = time.perf_counter()
    config = config or settings.trending
    store = store or OnlineStore.from_settings(settings)
    now = store.clock.time() if now is None else float(now)
    client = store.client
    hour = int(now) // d.HOUR_S
    candidates = sorted(
        m.decode() for m in client.sunion([store.keys.active(hour), store.keys.active(hour - 1)])
    )
    scored = score_items(store, candidates, now, config.read_chunk)
    score = scored["score"]
    live = np.flatnonzero(score > 0)
    order = live[np.argsort(-score[live], kind="stable")]
    lists: dict[str, list[int]] = {store.keys.trending(): order.tolist()}
    for i in order.tolist():
        ctype, lang = scored["content_type"][i], scored["language"][i]
        for key in (
            store.keys.trending(ctype, None),
            store.keys.trending(None, lang),
            store.keys.trending(ctype, lang),
        ):
            bucket = lists.setdefault(key, [])
            if len(bucket) < config.max_list_length:
                bucket.append(i)
    lists[store.keys.trending()] = lists[store.keys.trending()][: config.max_list_length]
    token = uuid.uuid4().hex[:8]
    pipe = client.pipeline(transaction=False)
    for key, members in lists.items():
        if members:
            pipe.zadd(f"{key}:tmp:{token}", {candidates[i]: float(score[i]) for i in members})
            pipe.pexpire(f"{key}:tmp:{token}", int(config.temp_ttl_s * 1000))
    pipe.execute()
    registry = store.keys.trending_registry()
    current = {k for k, members in lists.items() if members}
    tx = client.pipeline(transaction=True)
    for key in current:
        tx.rename(f"{key}:tmp:{token}", key)
        tx.persist(key)  # RENAME keeps the temporary key's TTL
    if current:
        tx.sadd(registry, *current)
    tx.hset(store.keys.trending_meta(), mapping={"refreshed_at": now, "items": len(order)})
    tx.execute()
    return TrendingReport(
        now=now,
        candidates=len(candidates),
        scored=int(live.size),
        lists={k: len(v) for k, v in sorted(lists.items()) if v},
        seconds=round(time.perf_counter() - started, 4),
    )


def run_trending(
    settings: FeedraySettings, once: bool = True, *, config: TrendingSettings | None = None
) -> TrendingReport:
    """Refresh once, or forever every ``settings.trending.refresh_interval_s``."""
    store = OnlineStore.from_settings(settings)
    while True:
        report = refresh_trending(settings, store=store, config=config)
        sys.stdout.write(report.model_dump_json() + "\n")
        sys.stdout.flush()
        if once:
            return report
        time.sleep(max(0.0, settings.trending.refresh_interval_s - report.seconds))


def trending_command(
    once: bool = typer.Option(
        True, "--once/--loop", help="Refresh once, or every refresh_interval_s."
    ),
) -> None:
    """Recompute the trending lists in Redis; one JSON line per refresh on stdout."""
    run_trending(get_settings(), once)


if __name__ == "__main__":
    typer.run(trending_command)
