"""The canary's shared state in Redis: the guardrail's abort record and served counts.

Every ingress replica adds its per-arm counts here (``HINCRBY``, batched every
``experiments.canary.sync_interval_s``) and reads the abort record, so an abort decided in
one replica reaches all of them and ``feedray canary status`` sees cluster-wide counts.
A thin adapter: the decisions are in ``app.experiments.guardrail``.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from app.features.keys import RedisKeys


class CanaryStore:
    def __init__(self, client: redis.Redis, prefix: str = "fr") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)

    @classmethod
    def from_settings(cls, settings: Any, request_path: bool = False) -> CanaryStore:
        """On the online store's Redis; ``request_path``: with the serving path's timeouts."""
        kwargs = settings.redis.client_kwargs()
        if request_path:
            hot = settings.serving_redis
            kwargs |= {
                "socket_timeout": hot.read_timeout_s,
                "socket_connect_timeout": hot.connect_timeout_s,
            }
        return cls(redis.Redis(**kwargs), settings.online_store.prefix)

    def record_abort(self, record: dict) -> bool:
        """Store the abort of ``record["experiment"]``; False when one was already stored."""
        key = self.keys.canary_abort(record["experiment"])
        return bool(self.client.set(key, json.dumps(record), nx=True))

    def abort(self, experiment: str) -> dict | None:
        raw = self.client.get(self.keys.canary_abort(experiment))
        return json.loads(raw) if raw else None

    def add_counts(self, experiment: str, counts: dict[str, int]) -> None:
        key = self.keys.canary_counts(experiment)
        pipe = self.client.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(key, name, n)
        pipe.execute()

    def counts(self, experiment: str) -> dict[str, int]:
        raw = self.client.hgetall(self.keys.canary_counts(experiment))
        return {k.decode(): int(v) for k, v in raw.items()}

    def clear(self, experiment: str) -> None:
        """Forget an experiment's abort and counts (``feedray canary start`` begins afresh)."""
        self.client.delete(self.keys.canary_abort(experiment), self.keys.canary_counts(experiment))
