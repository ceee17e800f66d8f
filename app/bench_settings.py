"""Settings of the scale benchmark suite (``bench.suite``): ``FeedraySettings.bench``
(``app.config``).

In ``app`` because ``FeedraySettings`` holds them and ``app`` imports nothing from ``bench``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class BenchSettings(BaseModel):
    """The scale benchmark suite (``feedray bench``, ``make bench``): world and sample sizes."""

    items: int = Field(3_000_000, ge=1)
    users: int = Field(1_000_000, ge=1)
    # Simulated history the world is built with: what fills user features and the training
    # set (whole UTC days, the first only feeds features: 2 days give training examples).
    # Sessions per user-day and items per session are the simulator's, lowered so 1M users
    # build on 2 cores: about 1 - exp(-sessions_per_day * days) of users have a session.
    days: float = Field(2.0, gt=0)
    sessions_per_day: float = Field(0.25, gt=0)
    session_items: float = Field(4.0, ge=1)
    epochs: int = Field(1, ge=1)
    reads: int = Field(10_000, ge=1)  # feature reads per kind
    queries: int = Field(2_000, ge=1)  # retrieval / ranking / pipeline requests
    exact_queries: int = Field(100, ge=1)  # exact-search queries for recall@k and its latency
    k: int = Field(500, ge=1)  # candidates retrieved and ranked
    http_requests: int = Field(400, ge=1)  # requests per concurrency level
    concurrencies: tuple[int, ...] = (1, 4, 8, 16)
    hop_allowance_ms: float = Field(60.0, ge=0)
    publish_trials: int = Field(5, ge=1)  # items published under load for freshness
    results_dir: Path = Path("bench/results")
    markdown: Path = Path("BENCHMARKS.md")
    # Feast's SDK as the feature-read peer runs in its own interpreter (its pins clash with the
    # project's): ``make bench-feast`` installs it here; absent, the peer is reported as not run.
    feast_python: Path | None = Path(".feedray/feast-venv/bin/python")
    feast_reads: int = Field(1_000, ge=1)
