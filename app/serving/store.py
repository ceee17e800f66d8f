"""The serving path's reads, over the platform's own stores (a thin adapter, no logic).

* users and item counters: ``app.features.online_store.OnlineStore`` (Redis; one round trip
  per user, one per batch of candidates). On the request path the client has the
  ``settings.serving_redis`` connect/read timeouts and no retries, so a sick Redis fails
  fast and the caller (behind its circuit breaker) degrades;
* trending and newest lists: ``app.features.trending.read_trending`` / ``read_newest`` +
  one ``item_metadata`` MGET to describe them;
* the catalogue the retrieval index is labelled with: the offline catalogue (Parquet,
  ``app.storage.read_catalogue``), the same table the index job embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from app.features.records import UserFeatures
from app.serving.assembly import TrendingEntry
from app.serving.encoding import ItemCounters


class ServingStore:
    def __init__(self, settings: Any, timeout_s: float | None = None) -> None:
        """Request-path client (``timeout_s`` None), or one with ``timeout_s`` for bulk reads."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from app.features.online_store import OnlineStore

        self.settings = settings
        hot = settings.serving_redis
        self.store = OnlineStore.from_settings(
            settings,
            socket_timeout=hot.read_timeout_s if timeout_s is None else timeout_s,
            socket_connect_timeout=hot.connect_timeout_s if timeout_s is None else timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def read_user(self, user_id: str) -> UserFeatures:
        """The user's online features (the defaults for a user never seen)."""
        return self.store.read_user(user_id)

    def read_item_counters(self, media_ids: Sequence[str]) -> tuple[ItemCounters, np.ndarray]:
        """(lifetime counters, found mask [n]) of the candidates, one round trip."""
        if not media_ids:
            return ItemCounters.zeros(0), np.zeros(0, bool)
        features = self.store.read_items(list(media_ids))
        return ItemCounters.from_store(features), features.found

    def read_lists(self, keys: Sequence[tuple[str, str, str]], k: int) -> list[list[TrendingEntry]]:
        """The top ``k`` entries of each fallback list (``app.serving.fallback.ListKey``),
        described by one ``item_metadata`` read each; newest items show score 0."""
        from app.features.trending import read_newest, read_trending
        from app.serving.fallback import ALL, NEWEST

        out = []
        for source, content_type, language in keys:
            if source == NEWEST:
                rows = [(m, 0.0) for m, _ in read_newest(self.store, content_type, k)]
            else:
                rows = read_trending(
                    store=self.store,
                    content_type=None if content_type == ALL else content_type,
                    language=None if language == ALL else language,
                    limit=k,
                )
            meta = self.store.item_metadata([m for m, _ in rows])
            described = [(m, s, meta[m]) for m, s in rows if m in meta]
            creators = self.store.names(
                "creator", np.asarray([m.creator for _, _, m in described], np.int64)
            )
            out.append(
                [
                    TrendingEntry(
                        media_id, score, m.content_type, str(creator), m.category, m.language
                    )
                    for (media_id, score, m), creator in zip(described, creators, strict=True)
                ]
            )
        return out

    def read_catalogue(self) -> pa.Table:
        """The offline catalogue, one row per media id (the latest publication wins)."""
        from app.storage import catalogue_root, read_catalogue

        return read_catalogue(catalogue_root(self.settings))
