"""The trending and newest lists in Redis: their readers (keys: ``app.features.keys``).

``data.trending`` writes them (the trending refresh, the catalogue's newest upsert); the
serving path reads them here.

* ``<prefix>:trending:all``, ``:trending:t:<type>``, ``:trending:l:<language>``,
  ``:trending:t:<type>:l:<language>``: sorted sets scored by trending score;
* ``<prefix>:newest:t:<type>``: sorted sets scored by publication time.
"""

from __future__ import annotations

from app.config import FeedraySettings, get_settings
from app.features.online_store import OnlineStore


def read_newest(store: OnlineStore, content_type: str, limit: int) -> list[tuple[str, float]]:
    """The ``limit`` newest (media_id, published_s) of a content type, newest first."""
    rows = store.client.zrevrange(store.keys.newest(content_type), 0, limit - 1, withscores=True)
    return [(m.decode(), float(s)) for m, s in rows]


def read_trending(
    settings: FeedraySettings | None = None,
    content_type: str | None = None,
    language: str | None = None,
    limit: int = 50,
    *,
    store: OnlineStore | None = None,
) -> list[tuple[str, float]]:
    """The top ``limit`` (media_id, score) of a list, best first."""
    if store is None:
        store = OnlineStore.from_settings(settings or get_settings())
    key = store.keys.trending(str(content_type) if content_type is not None else None, language)
    rows = store.client.zrevrange(key, 0, limit - 1, withscores=True)
    return [(m.decode(), float(s)) for m, s in rows]
