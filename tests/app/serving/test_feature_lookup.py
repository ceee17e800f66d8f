"""The request path's Redis reads fail fast and open the breaker when nothing listens.

No server: a free loopback port refuses connections, as a stopped Redis does. redis-py's
default client retries with exponential backoff, which kept each failed read waiting for
seconds; the request-path client must answer within its timeouts.
"""

from __future__ import annotations

import time

from app.config import FeedraySettings
from app.serving import degrade
from app.stack.process import free_port


def test_lookup_fails_fast_then_the_open_breaker_answers_without_trying() -> None:
    from app.serving.feature_lookup import FeatureLookup
    from app.serving.trending_reader import TrendingReader

    settings = FeedraySettings(redis={"port": free_port()})
    lookup = FeatureLookup(settings)
    failures = settings.serving_redis.breaker_failures
    for _ in range(failures):
        t0 = time.perf_counter()
        user, kinds, _ = lookup.lookup("u1")
        assert time.perf_counter() - t0 < 0.5  # far above the timeouts, far below a retry loop
        assert not user.known and degrade.FEATURES_DEFAULT in kinds
        assert degrade.REDIS_CIRCUIT_OPEN not in kinds
    assert lookup.breaker.state == "open"
    _, kinds, _ = lookup.lookup("u1")
    assert degrade.REDIS_CIRCUIT_OPEN in kinds
    entries, kinds = TrendingReader(lookup, settings.serving).gather([("VIDEO", "en")], 10)
    assert entries == [] and {degrade.REDIS_CIRCUIT_OPEN, degrade.TRENDING_UNAVAILABLE} <= set(
        kinds
    )
