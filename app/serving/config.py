"""Serving knobs that app/config.py does not (yet) carry; defaults suit one host.

The lead can move ``ServingExtras`` into ``app.config.FeedraySettings`` (e.g. as
``serving_runtime``); every field has a default, so nothing else changes.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServingExtras(BaseModel):
    """Timeouts, cache sizes and index upkeep for the Serve application."""

    # A Ray Serve hop costs ~10-15 ms p50 on a 2-core host (DESIGN.md), more than the seed's
    # 10 ms retrieval budget itself. The ingress therefore waits budget + hop_allowance_ms for
    # a stage before it falls back; the stage's own compute is still compared to its budget
    # and reported (``over_budget`` metric) without failing the request.
    hop_allowance_ms: float = Field(60.0, ge=0)
    # Last-known user features kept per ingress replica (used while Redis is unreachable).
    feature_cache_size: int = Field(50_000, ge=1)
    feature_cache_ttl_s: float = Field(3_600.0, gt=0)
    # Trending lists cached per replica (read on every fallback and every cold start).
    trending_cache_ttl_s: float = Field(30.0, gt=0)
    trending_fetch: int = Field(200, ge=1)
    # Live index: how often each retrieval replica fully rebuilds its index (0 = never).
    index_rebuild_interval_s: float = Field(900.0, ge=0)
    # Live index: how the retrieval replica consumes media.published.
    published_poll_s: float = Field(0.2, gt=0)
    # Retrieval searches both content types at once; a type with fewer candidates than this
    # in the top-N gets a search of its own (the re-rank's diversity draws on it).
    min_candidates_per_type: int = Field(100, ge=0)
    # Cold start: share of the feed drawn from trending (the rest from the context tower).
    cold_start_trending_share: float = Field(0.5, ge=0.0, le=1.0)
    # Exposure producer: librdkafka local queue bound (drops, never blocks, beyond it).
    exposure_queue_messages: int = Field(100_000, ge=1)
