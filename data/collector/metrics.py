"""The collector's ``feedray_collector_*`` counters and gauges (``ray.util.metrics``)."""

from __future__ import annotations

from collections import Counter as CounterDict
from typing import Any


class CollectorMetrics:
    """``ray.util.metrics`` instruments (no-ops outside a Ray worker)."""

    def __init__(self, worker: int) -> None:
        self.tags = {"worker": str(worker)}
        try:
            import ray
            from ray.util.metrics import Counter, Gauge

            if not ray.is_initialized():
                raise RuntimeError("no Ray")
            self.events = Counter(
                "feedray_collector_events_total",
                "Valid events applied to Redis.",
                tag_keys=("worker",),
            )
            self.rejected = Counter(
                "feedray_collector_rejected_total",
                "Messages sent to the dead-letter topic.",
                tag_keys=("worker", "reason"),
            )
            self.retries = Counter(
                "feedray_collector_redis_retries_total",
                "Redis write retries.",
                tag_keys=("worker",),
            )
            self.rate = Gauge(
                "feedray_collector_events_per_second", "Recent events/s.", tag_keys=("worker",)
            )
            self.lag = Gauge(
                "feedray_collector_consumer_lag",
                "Messages behind the end offset.",
                tag_keys=("worker", "topic", "partition"),
            )
            self.enabled = True
        except Exception:  # noqa: BLE001
            self.enabled = False

    def batch(self, events: int, rejects: list[tuple[Any, str, str]]) -> None:
        if not self.enabled:
            return
        if events:
            self.events.inc(events, tags=self.tags)
        for code, n in CounterDict(code for _, code, _ in rejects).items():
            self.rejected.inc(n, tags=self.tags | {"reason": code})

    def redis_retry(self) -> None:
        if self.enabled:
            self.retries.inc(1, tags=self.tags)

    def progress(self, rate: float, topic: str, lag: dict[int, int]) -> None:
        if not self.enabled:
            return
        self.rate.set(rate, tags=self.tags)
        for partition, value in lag.items():
            self.lag.set(value, tags=self.tags | {"topic": topic, "partition": str(partition)})
