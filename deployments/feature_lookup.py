"""User feature lookup: one Redis round trip, a bounded TTL cache of last-known features.

Why this runs *inside* the ingress replica instead of behind its own Serve hop: one Serve
hop costs ~10-15 ms p50 on this host (DESIGN.md) while the lookup itself is one pipelined
round trip (~0.5 ms). A separate FeatureLookup deployment would triple the stage's
latency and blow its 5 ms budget on overhead alone. ``FeatureLookupDeployment`` is kept
for clusters where Redis sits behind a network boundary only some nodes may cross; the
app builder composes it with ``features_hop=True``.

Item features (500 per request) are read inside the ranking replica, for the same reason:
shipping them through the ingress would add ~500 records to two hop payloads.
"""

from __future__ import annotations

import logging

from ray import serve

from app.config import FeedraySettings
from app.serving import degrade
from app.serving.breaker import CircuitBreaker
from app.serving.cache import TTLCache
from app.serving.config import ServingExtras
from app.serving.types import UserFeatures
from deployments.store import ServingStore

log = logging.getLogger(__name__)


class FeatureLookup:
    """The user's online features, else the last-known ones, else defaults."""

    def __init__(
        self, settings: FeedraySettings, extras: ServingExtras, store: ServingStore | None = None
    ) -> None:
        self.store = store or ServingStore(settings)
        self.cache: TTLCache[str, UserFeatures] = TTLCache(
            extras.feature_cache_size, extras.feature_cache_ttl_s
        )
        hot = settings.serving_redis
        self.breaker = CircuitBreaker(hot.breaker_failures, hot.breaker_retry_after_s)

    def lookup(self, user_id: str) -> tuple[UserFeatures, list[str], str | None]:
        """(features, degraded kinds, cache result 'hit'|'miss'|None)."""
        tried = self.breaker.allow()
        if tried:
            try:
                online = self.store.read_user(user_id)
            except Exception as error:  # noqa: BLE001 - any Redis failure degrades, never fails
                log.warning("user feature read failed: %s", error)
                self.breaker.failed()
            else:
                self.breaker.succeeded()
                features = UserFeatures.from_online(online)
                if features.known:
                    self.cache.put(user_id, features)
                return features, [], None
        circuit = [] if tried else [degrade.REDIS_CIRCUIT_OPEN]
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached, [degrade.FEATURES_UNAVAILABLE, degrade.FEATURES_CACHED, *circuit], "hit"
        return (
            UserFeatures(user_id=user_id, known=False),
            [degrade.FEATURES_UNAVAILABLE, degrade.FEATURES_DEFAULT, *circuit],
            "miss",
        )


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class FeatureLookupDeployment:
    """The same lookup behind its own Serve hop (opt-in; see the module docstring)."""

    def __init__(self, settings: dict, extras: dict) -> None:
        self.lookup_impl = FeatureLookup(FeedraySettings(**settings), ServingExtras(**extras))

    def lookup(self, user_id: str) -> tuple[UserFeatures, list[str], str | None]:
        return self.lookup_impl.lookup(user_id)
