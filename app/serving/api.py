"""HTTP API models for ``/api/v1/content/*`` (these generate the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas import ContentType

Source = Literal["retrieval", "trending", "cold_start"]


class FeedItem(BaseModel):
    media_id: str
    score: float
    content_type: ContentType
    creator_id: str
    category: str
    source: Source


class Timings(BaseModel):
    """Milliseconds per stage as measured by the ingress (Serve hops included)."""

    features: float
    retrieval: float
    ranking: float
    rerank: float
    total: float


class FeedResponse(BaseModel):
    request_id: str
    user_id: str
    items: list[FeedItem]
    model_versions: dict[str, str]
    arm: Literal["champion", "canary"]
    degraded: list[str] = Field(
        default_factory=list,
        description="What degraded while serving this feed; empty when nothing did. "
        "Entries: features_unavailable, features_cached, features_default, "
        "item_features_unavailable, retrieval_unavailable, retrieval_timeout, no_candidates, "
        "ranking_unavailable, ranking_timeout, trending_unavailable. A cold-start user is not "
        "degraded: their items carry source cold_start / trending.",
    )
    timings_ms: Timings


class TrendingItem(BaseModel):
    media_id: str
    score: float
    content_type: ContentType
    creator_id: str
    category: str


class TrendingResponse(BaseModel):
    content_type: ContentType | None
    language: str | None
    items: list[TrendingItem]
    degraded: list[str] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"]
    model_versions: dict[str, dict[str, str]]
