"""Settings of the live loop ``feedray up`` runs besides the servers: ``FeedraySettings.stack``
and ``FeedraySettings.audience`` (``app.config``).

Beside the code that starts the live services (``app.stack.live``), as the model settings sit
beside the models in ``app.models.config``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

LiveServiceName = Literal["catalogue", "collector", "trending", "ingest", "audience", "pipeline"]
LIVE_SERVICE_NAMES: tuple[LiveServiceName, ...] = (
    "catalogue",
    "collector",
    "trending",
    "ingest",
    "audience",
    "pipeline",
)
# The scheduled retraining pipeline trains both models each run (minutes of CPU), so a plain
# `feedray up` leaves it out; name it in stack.live_services (or `up --only pipeline`) to run it.
DEFAULT_LIVE_SERVICES: tuple[LiveServiceName, ...] = LIVE_SERVICE_NAMES[:-1]


class StackSettings(BaseModel):
    """What ``feedray up`` runs besides the servers: the live loop of long-running commands."""

    # Started (in this order) after the servers by `feedray up`, stopped first by `down`.
    live_services: tuple[LiveServiceName, ...] = DEFAULT_LIVE_SERVICES
    collector_workers: int = Field(1, ge=1)
    # A live service still running this long after its start counts as started.
    live_start_grace_s: float = Field(3.0, ge=0)


class AudienceSettings(BaseModel):
    """The simulated audience that keeps producing events in real time (``feedray audience``)."""

    events_per_s: float = Field(5.0, gt=0)  # mean rate (the diurnal cycle moves it +-50 %)
    tick_s: float = Field(1.0, gt=0)  # how often events that came due are produced
    # `feedray audience --feeds-from URL`: users ask the feed service and respond to its feeds.
    feed_limit: int = Field(10, ge=1, le=100)  # items per feed request
    feed_threads: int = Field(3, ge=1)  # concurrent client threads
