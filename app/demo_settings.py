"""Settings of ``feedray demo`` (``app.demo``): ``FeedraySettings.demo`` (``app.config``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DemoSettings(BaseModel):
    """The world and training lengths of ``feedray demo`` (sized for 10 minutes on 2 cores)."""

    users: int = Field(5_000, ge=1)
    items: int = Field(20_000, ge=1)
    creators: int = Field(1_000, ge=1)
    # Training sets use whole UTC days (the first only feeds features): 2 days of history
    # give training examples at any hour.
    days: float = Field(2.0, gt=0)
    eval_days: float = Field(0.25, gt=0)  # held out for the offline evaluation gate
    retrieval_epochs: int = Field(1, ge=1)
    ranking_epochs: int = Field(1, ge=1)
    feed_limit: int = Field(5, ge=1, le=100)  # items asked for in the example request
    feed_attempts: int = Field(5, ge=1)  # requests until one answers with nothing degraded
    # The closing canary: a ranker trained for longer against the champion, under a simulated
    # audience that responds to the feeds it is served (`feedray audience --feeds-from`).
    challenger_ranking_epochs: int = Field(2, ge=1)
    canary_share: float = Field(0.5, gt=0.0, lt=1.0)
    canary_window_h: float = Field(0.05, gt=0.0)  # 3 minutes of wall-clock traffic
