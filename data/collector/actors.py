"""Collector workers in threaded Ray actors."""

from __future__ import annotations

import logging
from typing import Any

from app.config import CollectorSettings, FeedraySettings
from data.collector.worker import CollectorWorker


def _actor_class():
    import ray

    @ray.remote(max_concurrency=4)
    class CollectorActor:
        """A ``CollectorWorker`` in a threaded Ray actor (``stop``/``stats`` beside ``run``)."""

        def __init__(
            self, settings: FeedraySettings, worker: int, config: CollectorSettings
        ) -> None:
            logging.basicConfig(level=logging.WARNING)
            self.worker = CollectorWorker(settings, worker, config)

        def run(self, max_seconds: float | None = None) -> dict[str, Any]:
            return self.worker.run(max_seconds)

        def stop(self) -> None:
            self.worker.stop()

        def stats(self) -> dict[str, Any]:
            return self.worker.stats()

    return CollectorActor


def start_collector_actors(
    settings: FeedraySettings, workers: int, config: CollectorSettings
) -> list[Any]:
    """Create ``workers`` collector actors (not yet running)."""
    actor = _actor_class()
    return [
        actor.options(num_cpus=config.actor_num_cpus).remote(settings, i, config)
        for i in range(workers)
    ]
