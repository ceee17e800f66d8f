"""Retrieval deployment: user tower + FAISS top-N per content type, minus recently consumed.

Each replica holds one index per loaded model version (champion and canary may differ),
keeps it live from ``media.published`` (its own Kafka consumer, positioned at the end of
the topic *before* the catalogue is read, so nothing published during start-up is lost),
and rebuilds it in full every ``index_rebuild_interval_s``, swapping atomically.

``user_config`` (hot, via ``reconfigure``; no restart)::

    models: {champion: "two_tower@3", canary: "two_tower@4"}   # or "alias:champion"
    fault: null | "error"     # fault injection for drills and tests
    delay_ms: 0               # artificial stage delay (drills: "stage over budget")
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid

import numpy as np
from ray import serve

from app.config import FeedraySettings
from app.serving.config import ServingExtras
from app.serving.types import CandidateBatch, RequestContext, UserFeatures
from deployments.live_index import TYPES, IndexState, build_state
from deployments.standins import ItemTable, load_retrieval_model, make_online_store, resolve_model_ref

log = logging.getLogger(__name__)
MODEL_NAME = "two_tower"


def _gpu_faiss(state: IndexState) -> None:  # pragma: no cover - GPU hosts only
    """Move each per-type index to the GPU when FAISS has GPU support and a GPU is visible."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return
    resources = faiss.StandardGpuResources()
    state.indexes = {t: faiss.index_cpu_to_gpu(resources, 0, i) for t, i in state.indexes.items()}


class RetrievalCore:
    """Everything but Serve: testable in-process."""

    def __init__(self, settings: FeedraySettings, extras: ServingExtras, consume_published: bool = True) -> None:
        import faiss

        faiss.omp_set_num_threads(1)
        self.settings = settings
        self.extras = extras
        self.store = make_online_store(settings, 30.0, extras.online_store)
        self.refs: dict[str, str] = {}
        self.states: dict[str, IndexState] = {}  # arm -> state (swapped as a whole)
        self.fault: str | None = None
        self.delay_ms = 0.0
        self._live: list[ItemTable] = []  # items added from media.published since start
        self._stop = threading.Event()
        self._consumer_positions = self._published_positions() if consume_published else None
        self.catalogue = ItemTable.from_records(self.store.read_catalogue())
        self.last_publish_lag_s: float | None = None
        if consume_published:
            threading.Thread(target=self._consume_published, daemon=True, name="published").start()
        if extras.index_rebuild_interval_s > 0:
            threading.Thread(target=self._rebuild_loop, daemon=True, name="rebuild").start()

    # ---------------------------------------------------------------- models / reconfigure
    def load(self, models: dict[str, str]) -> None:
        """Build an index for every newly referenced version, then swap all arms at once."""
        by_version = {s.model.version: s for s in self.states.values()}
        new: dict[str, IndexState] = {}
        for arm, ref in models.items():
            version = resolve_model_ref(ref, MODEL_NAME, self.settings)
            if version not in by_version:
                state = build_state(load_retrieval_model(version, self.settings.serving.embedding_dim), self._all_items())
                _gpu_faiss(state)
                by_version[version] = state
            new[arm] = by_version[version]
        self.states = new
        self.refs = dict(models)

    def _all_items(self) -> ItemTable:
        table = ItemTable(
            list(self.catalogue.media_ids), list(self.catalogue.content_types), list(self.catalogue.creator_ids),
            list(self.catalogue.categories), list(self.catalogue.languages), self.catalogue.durations.copy(),
        )  # fmt: skip
        for extra in list(self._live):
            table.media_ids.extend(extra.media_ids)
            table.content_types.extend(extra.content_types)
            table.creator_ids.extend(extra.creator_ids)
            table.categories.extend(extra.categories)
            table.languages.extend(extra.languages)
            table.durations = np.concatenate([table.durations, extra.durations])
        return table

    def rebuild(self) -> None:
        """Full rebuild from the catalogue (plus live adds), swapped in atomically."""
        self.catalogue = ItemTable.from_records(self.store.read_catalogue())
        items = self._all_items()
        rebuilt: dict[str, IndexState] = {}
        for state in {id(s): s for s in self.states.values()}.values():
            fresh = build_state(state.model, items)
            state_live = {m for m in state.row_of}  # items added to the old state meanwhile
            missing = [m for m in state_live if m not in fresh.row_of]
            if missing:
                rows = [state.row_of[m] for m in missing]
                fresh.add(ItemTable(
                    missing, [state.items.content_types[r] for r in rows], [state.items.creator_ids[r] for r in rows],
                    [state.items.categories[r] for r in rows], [state.items.languages[r] for r in rows],
                    state.items.durations[rows],
                ))  # fmt: skip
            _gpu_faiss(fresh)
            rebuilt[state.model.version] = fresh
        self.states = {arm: rebuilt[s.model.version] for arm, s in self.states.items()}
        self._live = []

    def _rebuild_loop(self) -> None:
        while not self._stop.wait(self.extras.index_rebuild_interval_s):
            try:
                self.rebuild()
            except Exception:  # noqa: BLE001 - keep serving the old index
                log.exception("index rebuild failed; keeping the current index")

    # ---------------------------------------------------------------- live adds
    def _published_positions(self):
        from confluent_kafka import Consumer, TopicPartition

        topic = self.settings.kafka.topics.published
        consumer = Consumer(self.settings.kafka.client_config(**{"group.id": f"feedray-retrieval-{uuid.uuid4().hex}", "enable.auto.commit": False}))
        try:
            meta = consumer.list_topics(topic, timeout=10)
            partitions = meta.topics[topic].partitions if topic in meta.topics else {}
            positions = []
            for p in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                positions.append(TopicPartition(topic, p, high))
            return positions
        except Exception:  # noqa: BLE001 - no broker: serve without live adds
            log.exception("media.published not reachable; live index updates disabled")
            return []
        finally:
            consumer.close()

    def _consume_published(self) -> None:
        from confluent_kafka import Consumer

        from app.schemas import InvalidEvent, parse_media_published

        if not self._consumer_positions:
            return
        consumer = Consumer(self.settings.kafka.client_config(**{"group.id": f"feedray-retrieval-{uuid.uuid4().hex}", "enable.auto.commit": False}))
        consumer.assign(self._consumer_positions)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=self.extras.published_poll_s)
                published = []
                for message in messages:
                    if message.error():
                        continue
                    try:
                        published.append(parse_media_published(message.value()))
                    except InvalidEvent as error:
                        log.warning("skipping bad media.published message: %s", error.reason)
                if published:
                    self.add_published(published)
        finally:
            consumer.close()

    def add_published(self, published) -> int:
        table = ItemTable(
            [p.media_id for p in published], [p.content_type.value for p in published],
            [p.creator_id for p in published], [p.category for p in published],
            [p.language for p in published], np.asarray([p.duration_s for p in published], np.float32),
        )  # fmt: skip
        self._live.append(table)
        added = 0
        for state in {id(s): s for s in self.states.values()}.values():
            added = max(added, state.add(table))
        self.last_publish_lag_s = max(time.time() - p.published_at.timestamp() for p in published)
        return added

    # ---------------------------------------------------------------- serving
    def retrieve(self, user: UserFeatures, context: RequestContext, arm: str, k: int) -> CandidateBatch:
        t0 = time.perf_counter()
        state = self.states.get(arm) or self.states["champion"]
        vector = state.model.user_vector(user, context)
        exclude = set(user.recent_media)
        extra = len(exclude)
        if context.content_type in TYPES:
            k_by_type = {context.content_type: k + extra}
        else:
            k_by_type = {t: k // 2 + extra for t in TYPES}
        rows, scores = state.search(vector, k_by_type)
        items = state.items
        keep = [j for j, r in enumerate(rows) if items.media_ids[r] not in exclude]
        order = sorted(keep, key=lambda j: -scores[j])[:k]
        rows = [int(rows[j]) for j in order]
        return CandidateBatch(
            media_ids=[items.media_ids[r] for r in rows],
            scores=np.asarray([scores[j] for j in order], np.float32),
            content_types=[items.content_types[r] for r in rows],
            creator_ids=[items.creator_ids[r] for r in rows],
            categories=[items.categories[r] for r in rows],
            languages=[items.languages[r] for r in rows],
            model_version=f"{MODEL_NAME}@{state.model.version}",
            index_size=state.size,
            compute_ms=(time.perf_counter() - t0) * 1000.0,
        )

    def stats(self) -> dict:
        return {
            arm: {"version": s.model.version, "size": s.size, "age_s": time.time() - s.built_at}
            for arm, s in self.states.items()
        }

    def contains(self, media_ids: list[str]) -> dict[str, bool]:
        """Whether each item is retrievable: indexed *and* found by a search with its own vector."""
        state = self.states["champion"]
        out = {}
        for media_id in media_ids:
            row = state.row_of.get(media_id)
            if row is None:
                out[media_id] = False
                continue
            vector = state.model.item_vectors(ItemTable(
                [media_id], [state.items.content_types[row]], [state.items.creator_ids[row]],
                [state.items.categories[row]], [state.items.languages[row]], state.items.durations[[row]],
            ))[0]  # fmt: skip
            rows, _ = state.search(vector, {state.items.content_types[row]: 10})
            out[media_id] = row in set(rows.tolist())
        return out

    def close(self) -> None:
        self._stop.set()


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    user_config={"models": {"champion": "two_tower@1", "canary": "two_tower@1"}},
    health_check_period_s=5,
)
class Retrieval:
    def __init__(self, settings: dict, extras: dict) -> None:
        self.started_at = time.time()
        self.core = RetrievalCore(FeedraySettings(**settings), ServingExtras(**extras))
        self._gauges = threading.Thread(target=self._report_index, daemon=True)
        self._gauges.start()

    async def reconfigure(self, config: dict) -> None:
        models = dict(config.get("models") or {"champion": "two_tower@1"})
        models.setdefault("canary", models["champion"])
        if models != self.core.refs:
            await asyncio.to_thread(self.core.load, models)  # requests keep flowing meanwhile
        self.core.fault = config.get("fault")
        self.core.delay_ms = float(config.get("delay_ms") or 0.0)

    async def retrieve(self, user: UserFeatures, context: RequestContext, arm: str, k: int) -> CandidateBatch:
        if self.core.delay_ms:
            await asyncio.sleep(self.core.delay_ms / 1000.0)
        if self.core.fault == "error":
            raise RuntimeError("retrieval fault injected")
        return self.core.retrieve(user, context, arm, k)

    def stats(self) -> dict:
        return self.core.stats()

    def contains(self, media_ids: list[str]) -> dict[str, bool]:
        return self.core.contains(media_ids)

    def replica_info(self) -> dict:
        """Process id and start time: an in-place reconfigure keeps both."""
        return {"pid": os.getpid(), "started_at": self.started_at, "refs": self.core.refs}

    def rebuild(self) -> dict:
        self.core.rebuild()
        return self.core.stats()

    def check_health(self) -> None:
        if not self.core.states:
            raise RuntimeError("no index loaded")

    def _report_index(self) -> None:
        from deployments.metrics import metrics

        while True:
            time.sleep(5)
            try:
                m = metrics()
                for state in {id(s): s for s in self.core.states.values()}.values():
                    tags = {"model_version": state.model.version}
                    m.index_size.set(state.size, tags=tags)
                    m.index_age.set(time.time() - state.built_at, tags=tags)
                if self.core.last_publish_lag_s is not None:
                    m.publish_lag.observe(self.core.last_publish_lag_s)
                    self.core.last_publish_lag_s = None
            except Exception:  # noqa: BLE001
                log.exception("index metrics")
