"""Part of section ``http``: publish-to-retrievable while the feed is under load.

A background thread keeps ``concurrency`` closed-loop feed requests in flight
(``bench.bench_serving.load``, in rounds until told to stop). Meanwhile each trial publishes
one new item to ``kafka.topics.published`` and polls the ingress's ``index_contains`` (one
Serve call to the retrieval stage) every ``poll_s`` until the item is in the live index:
the lag is publish to retrievable, as a user would first be able to be shown it. The feed
figures of the requests made during the trials come with it (latency, requests/s, degraded
share, non-200), so a freshness figure bought by starving the feed would show.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np

from app.config import FeedraySettings
from bench.common import percentiles

TARGET_S = 5.0


def publish_to_retrievable(
    settings: FeedraySettings,
    producer,
    handles,
    ingress,
    content_type: str,
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> float:
    """Seconds from publishing one new item to ``kafka.topics.published`` until the ingress's
    ``index_contains`` finds it (its own vector retrieves it); ``TimeoutError`` past
    ``timeout_s``. ``handles`` is a ``bench.common.HandleCaller``."""
    from app.schemas import MediaPublished

    media_id = f"m-fresh-{uuid.uuid4().hex[:10]}"
    item = MediaPublished(
        media_id=media_id,
        creator_id="c-fresh",
        content_type=content_type,
        category="music",
        language="en",
        duration_s=180.0,
        published_at=datetime.now(UTC),
    )
    t0 = time.perf_counter()
    producer.produce(
        settings.kafka.topics.published,
        key=media_id.encode(),
        value=item.model_dump_json().encode(),
    )
    producer.flush(10)
    while time.perf_counter() - t0 < timeout_s:
        if handles.call(ingress, "index_contains", [media_id])[media_id]:
            return time.perf_counter() - t0
        time.sleep(poll_s)
    raise TimeoutError(f"{media_id} not retrievable {timeout_s:.0f}s after publish")


def freshness_under_load(
    settings: FeedraySettings,
    url: str,
    feed,
    concurrency: int,
    trials: int,
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> dict:
    """``trials`` publish-to-retrievable lags (s) with ``concurrency`` feed requests running."""
    from confluent_kafka import Producer
    from ray import serve

    from bench.bench_serving import load, stage_figures
    from bench.common import HandleCaller

    ingress = serve.get_deployment_handle("Ingress", app_name="feedray")
    handles = HandleCaller()
    producer = Producer(settings.kafka.client_config())
    stop = threading.Event()
    latencies: list[float] = []
    bodies: list[dict] = []

    def background() -> None:
        offset = 0  # each round asks for the next users
        while not stop.is_set():
            lat, got = load(url, lambda k, o=offset: feed(k + o), 4 * concurrency, concurrency)
            latencies.extend(lat)
            bodies.extend(got)
            offset += len(lat)

    loader = threading.Thread(target=background, daemon=True, name="freshness-load")
    lags: list[float] = []
    t_load = time.perf_counter()
    loader.start()
    try:
        time.sleep(1.0)  # the load reaches its steady state before the first publish
        for trial in range(trials):
            content_type = "VIDEO" if trial % 2 else "AUDIO"
            lags.append(
                publish_to_retrievable(
                    settings, producer, handles, ingress, content_type, timeout_s, poll_s
                )
            )
    finally:
        stop.set()
        loader.join(120)
        handles.close()
    wall = time.perf_counter() - t_load
    non_200 = sum(1 for b in bodies if "status" in b and "timings_ms" not in b)
    return {
        "publish_to_retrievable_s": {
            "samples": lags,
            "median": float(np.median(lags)),
            "max": max(lags),
            "target_s": TARGET_S,
        },
        "load": {"concurrency": concurrency}
        | percentiles(latencies)
        | {"rps": len(latencies) / wall, "non_200": non_200}
        | stage_figures(bodies),
    }
