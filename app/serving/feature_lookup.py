"""User feature lookup: one Redis round trip, a bounded TTL cache of last-known features.

Runs in the ingress replica (``deployments/ingress.py``); the app builder's
``features_hop=True`` puts it behind its own Serve hop instead
(``deployments/feature_lookup.py``), for clusters where Redis sits behind a network
boundary only some nodes may cross. Item features are read by the ranking stage.
"""

from __future__ import annotations

import logging

from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving import degrade
from app.serving.breaker import CircuitBreaker
from app.serving.cache import TTLCache
from app.serving.store import ServingStore

log = logging.getLogger(__name__)


class FeatureLookup:
    """The user's online features, else the last-known ones, else defaults."""

    def __init__(self, settings: FeedraySettings, store: ServingStore | None = None) -> None:
        self.store = store or ServingStore(settings)
        serving = settings.serving
        self.cache: TTLCache[str, UserFeatures] = TTLCache(
            serving.feature_cache_size, serving.feature_cache_ttl_s
        )
        hot = settings.serving_redis
        self.breaker = CircuitBreaker(hot.breaker_failures, hot.breaker_retry_after_s)

    def lookup(self, user_id: str) -> tuple[UserFeatures, list[str], str | None]:
        """(features, degraded kinds, cache result 'hit'|'miss'|None)."""
        tried = self.breaker.allow()
        if tried:
            try:
                features = self.store.read_user(user_id)
            except Exception as error:  # noqa: BLE001 - any Redis failure degrades, never fails
                log.warning("user feature read failed: %s", error)
                self.breaker.failed()
            else:
                self.breaker.succeeded()
                if features.known:
                    self.cache.put(user_id, features)
                return features, [], None
        circuit = [] if tried else [degrade.REDIS_CIRCUIT_OPEN]
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached, [degrade.FEATURES_UNAVAILABLE, degrade.FEATURES_CACHED, *circuit], "hit"
        return (
            UserFeatures(user_id=user_id),
            [degrade.FEATURES_UNAVAILABLE, degrade.FEATURES_DEFAULT, *circuit],
            "miss",
        )
