"""A feed audience: simulated users asking the running feed service for feeds and responding to
what it served, in real time, into Kafka (the closed loop of a canary experiment).

Each of ``threads`` clients cycles through its share of ``users``: ``GET /api/v1/content/feed``,
then the user's response to the items in the order served, drawn from the simulator's response
model (``data.simulate.response.respond``: position bias, the world's true affinity), starting
at the settings clock's instant the answer arrived (the clock the service stamps its exposures
with). The events go to the engagement topic through ``KafkaSink``; ids start at the run's
start instant in ms x 1,000, apart from the recorded history and from other runs (as
``LiveAudience``'s). A model that serves better items gets more starts and completions: that
is the signal a canary evaluation measures.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.clock import Clock, clock_from_settings
from app.config import FeedraySettings
from data.simulate.events import PublicationChunk
from data.simulate.response import ResponseConfig, respond
from data.simulate.sessions import SimulationChunk
from data.simulate.sinks import KafkaSink
from data.simulate.world import World


@dataclass
class AudienceStats:
    """What the audience asked for and did: feeds per arm, failed requests, events sent."""

    feeds: Counter = field(default_factory=Counter)  # arm -> feeds answered 200
    failures: list[str] = field(default_factory=list)  # one line per request that failed
    events: int = 0
    starts: Counter = field(default_factory=Counter)  # arm -> items started

    def summary(self) -> dict:
        return {
            "feeds": dict(self.feeds),
            "starts": dict(self.starts),
            "events": self.events,
            "failures": len(self.failures),
        }


class FeedAudience:
    """``users`` (world indices) of ``world`` requesting feeds of ``limit`` items from
    ``base_url`` and responding to them, on ``threads`` client threads, until stopped
    (``with FeedAudience(...) as audience:``; ``stats`` once stopped)."""

    def __init__(
        self,
        settings: FeedraySettings,
        world: World,
        base_url: str,
        users: Sequence[int],
        *,
        limit: int = 10,
        threads: int = 3,
        seed: int = 0,
        response: ResponseConfig | None = None,
        clock: Clock | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not users:
            raise ValueError("the audience needs at least one user")
        self.settings, self.world, self.base_url = settings, world, base_url.rstrip("/")
        self.users, self.limit, self.timeout_s = list(users), limit, timeout_s
        self.response = response or ResponseConfig()
        self.clock = clock or clock_from_settings(settings)
        self.stats = AudienceStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sink = KafkaSink(settings)
        self._next_event = int(self.clock.time() * 1000) * 1_000
        self._workers = [
            threading.Thread(target=self._run, args=(k, threads, seed + k), daemon=True)
            for k in range(threads)
        ]

    def _feed(self, user: int) -> dict:
        query = urllib.parse.urlencode({"user_id": f"u{user}", "limit": self.limit})
        url = f"{self.base_url}/api/v1/content/feed?{query}"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as answer:
            return json.loads(answer.read())

    def _respond(self, user: int, body: dict, rng: np.random.Generator) -> None:
        items = np.array([int(item["media_id"][1:]) for item in body["items"]], dtype=np.int32)
        if not len(items):
            return
        at_ms = int(self.clock.time() * 1000)
        response = respond(self.world, user, items, rng, at_ms=at_ms, config=self.response)
        events = response.events
        with self._lock:
            events.event_seq = self._next_event + np.arange(len(events), dtype=np.int64)
            self._next_event += len(events)
            chunk = SimulationChunk(
                at_ms, at_ms, events, PublicationChunk(np.empty(0, dtype=np.int32))
            )
            self._sink.write(chunk, self.world)
            self.stats.events += len(events)
            self.stats.feeds[body["arm"]] += 1
            self.stats.starts[body["arm"]] += int(response.started.sum())

    def _run(self, offset: int, step: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        k = offset
        while not self._stop.is_set():
            user = self.users[k % len(self.users)]
            k += step
            try:
                body = self._feed(user)
            except Exception as error:  # noqa: BLE001 - a failed request is counted, not fatal
                with self._lock:
                    self.stats.failures.append(f"u{user}: {error!r}")
                continue
            self._respond(user, body, rng)

    def __enter__(self) -> FeedAudience:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> AudienceStats:
        """Stop the clients, deliver every event (``DeliveryError`` if any failed)."""
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self._sink.close()
        return self.stats


def wait_for(predicate, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passed; whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
