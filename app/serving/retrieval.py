"""Retrieval: the two-tower's user tower + FAISS top-N per content type, minus recently consumed.

``RetrievalCore`` loads, per arm, a registered two-tower version from MLflow and the FAISS
index logged with that version (``app.serving.live_index``; built from the catalogue with
that version's content tower when no index job ran). It keeps the index live from
``media.published`` (its own Kafka consumer, positioned at the end of the topic *before*
the catalogue is read, so nothing published during start-up is lost), and rebuilds it in
full every ``serving.index_rebuild_interval_s`` with current counters, swapping atomically;
a rebuild tunes the index on the user vectors the version's searches recorded
(``app.serving.served_queries``).
The ``Retrieval`` deployment (``deployments/retrieval.py``) and the ingress's local stages
run it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence

import numpy as np

from app.clock import clock_from_settings
from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving.candidates import select_with_type_floor
from app.serving.catalogue import CatalogueColumns
from app.serving.encoding import users_columns
from app.serving.live_index import TYPES, LiveIndex, build_live_index
from app.serving.model_refs import load_logged_index, load_model, resolve_arms
from app.serving.served_queries import ServedQueries
from app.serving.store import ServingStore
from app.serving.types import CandidateBatch, RequestContext

log = logging.getLogger(__name__)


class RetrievalCore:
    """Everything but Serve: testable in-process."""

    def __init__(self, settings: FeedraySettings, consume_published: bool = True) -> None:
        import faiss
        import torch

        faiss.omp_set_num_threads(settings.serving.faiss_threads)
        torch.set_num_threads(settings.serving.torch_threads)
        self.settings = settings
        self.clock = clock_from_settings(settings)
        self.serving = settings.serving
        self.model_name = settings.models.retrieval_model_name
        self.store = ServingStore(settings, timeout_s=30.0)
        self.refs: dict[str, str] = {}
        self.states: dict[str, LiveIndex] = {}  # arm -> index (swapped as a whole)
        self._published: list[CatalogueColumns] = []  # items from media.published since start
        self._stop = threading.Event()
        self._load_lock = threading.Lock()
        self._consumer_positions = self._published_positions() if consume_published else None
        self.catalogue = CatalogueColumns.from_table(self.store.read_catalogue())
        self.last_publish_lag_s: float | None = None
        self.warmup: dict = {}  # arm -> {"ms", "n"} of the warm-up after the last load
        if consume_published:
            threading.Thread(target=self._consume_published, daemon=True, name="published").start()
        if self.serving.index_rebuild_interval_s > 0:
            threading.Thread(target=self._rebuild_loop, daemon=True, name="rebuild").start()

    # ---------------------------------------------------------------- models / reconfigure
    def _all_items(self) -> CatalogueColumns:
        items = self.catalogue
        for extra in list(self._published):
            items = items.concat(extra)
        return items

    def _build(self, version: str) -> LiveIndex:
        model, version = load_model(self.settings, self.model_name, version)
        logged = load_logged_index(self.settings, self.model_name, version)
        items = self._all_items()
        settings = self.settings.models.index
        state = build_live_index(
            model,
            version,
            items,
            logged,
            settings,
            clock=self.clock,
            served=ServedQueries(settings.recall_queries),
        )
        if logged is not None:  # published after the index job ran: embed and add them now
            missing = np.asarray(
                [i for i, m in enumerate(items.media_ids) if m not in state.index], np.int64
            )
            if missing.size:
                try:
                    state.add(items.take(missing))
                except Exception:
                    log.exception("could not add %d late items to the logged index", missing.size)
        return state

    def load(self, models: dict[str, str]) -> None:
        """Load every newly referenced version and its index, then swap all arms at once."""
        with self._load_lock:
            versions = resolve_arms(models, self.model_name, self.settings)
            by_version = {s.version: s for s in self.states.values()}
            for version in set(versions.values()) - set(by_version):
                by_version[version] = self._build(version)
            self.states = {arm: by_version[v] for arm, v in versions.items()}
            self.refs = dict(models)
        try:
            self.warm()
        except Exception:
            log.exception("retrieval warm-up failed")

    def warm(self) -> dict:
        """One user-tower forward and one FAISS search per arm (first-call costs paid here)."""
        report = {}
        for arm in self.states:
            t0 = time.perf_counter()
            batch = self.retrieve(
                UserFeatures(user_id="warmup"),
                RequestContext(),
                arm,
                self.settings.serving.candidate_count,
            )
            report[arm] = {"ms": round((time.perf_counter() - t0) * 1000.0, 2), "n": len(batch)}
        self.warmup = report
        return report

    def rebuild(self) -> None:
        """Full rebuild of every loaded version's index from the catalogue and current counters."""
        with self._load_lock:
            self.catalogue = CatalogueColumns.from_table(self.store.read_catalogue())
            self._published = []
            items = self._all_items()
            try:
                counters, _ = self.store.read_item_counters(items.media_ids)
            except Exception as error:  # noqa: BLE001 - rebuild on zero counters rather than not at all
                log.warning(
                    "counters unavailable for the rebuild (%s); embedding with zeros", error
                )
                counters = None
            rebuilt = {}
            for state in {id(s): s for s in self.states.values()}.values():
                fresh = build_live_index(
                    state.model,
                    state.version,
                    items,
                    None,
                    self.settings.models.index,
                    counters,
                    clock=self.clock,
                    served=state.served,
                )
                late = [
                    m for m in state.index.ids if m not in fresh.index
                ]  # added to the old one meanwhile
                if late:
                    fresh.add(state.items.take(np.asarray([state.index.position(m) for m in late])))
                rebuilt[state.version] = fresh
            self.states = {arm: rebuilt[s.version] for arm, s in self.states.items()}

    def _rebuild_loop(self) -> None:
        while not self._stop.wait(self.serving.index_rebuild_interval_s):
            try:
                self.rebuild()
            except Exception:
                log.exception("index rebuild failed; keeping the current index")

    # ---------------------------------------------------------------- live adds
    def _published_positions(self):
        from confluent_kafka import Consumer, TopicPartition

        topic = self.settings.kafka.topics.published
        consumer = Consumer(
            self.settings.kafka.client_config(
                **{"group.id": f"feedray-retrieval-{uuid.uuid4().hex}", "enable.auto.commit": False}
            )
        )
        try:
            meta = consumer.list_topics(topic, timeout=10)
            partitions = meta.topics[topic].partitions if topic in meta.topics else {}
            positions = []
            for p in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                positions.append(TopicPartition(topic, p, high))
            return positions
        except Exception:
            log.exception("media.published not reachable; live index updates disabled")
            return []
        finally:
            consumer.close()

    def _consume_published(self) -> None:
        from confluent_kafka import Consumer

        from app.schemas import InvalidEvent, parse_media_published

        if not self._consumer_positions:
            return
        consumer = Consumer(
            self.settings.kafka.client_config(
                **{"group.id": f"feedray-retrieval-{uuid.uuid4().hex}", "enable.auto.commit": False}
            )
        )
        consumer.assign(self._consumer_positions)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=self.serving.published_poll_s)
                published = []
                for message in messages:
                    if message.error():
                        continue
                    try:
                        published.append(parse_media_published(message.value()))
                    except InvalidEvent as error:
                        log.warning("skipping bad media.published message: %s", error.reason)
                if published:
                    try:
                        self.add_published(published)
                    except Exception:
                        log.exception("live index add failed")
        finally:
            consumer.close()

    def add_published(self, published) -> int:
        items = CatalogueColumns.from_published(published)
        self._published.append(items)
        added = 0
        for state in {id(s): s for s in self.states.values()}.values():
            added = max(added, state.add(items))
        self.last_publish_lag_s = max(
            self.clock.time() - p.published_at.timestamp() for p in published
        )
        return added

    # ---------------------------------------------------------------- serving
    def retrieve(
        self, user: UserFeatures, context: RequestContext, arm: str, k: int
    ) -> CandidateBatch:
        """Top-k candidates for the user: [k] media with cosine scores and their attributes."""
        return self.retrieve_batch([user], [context], arm, k)[0]

    def retrieve_batch(
        self,
        users: Sequence[UserFeatures],
        contexts: Sequence[RequestContext],
        arm: str,
        k: int,
    ) -> list[CandidateBatch]:
        """Top-k candidates for each of B requests on ``arm``'s index: one user-tower forward
        over the B users ([B, dim]) and one FAISS search for every request without a content
        type filter; then, per request and vectorised over its candidates, the recently
        consumed items removed and the per-type floor applied."""
        import torch

        from app.models.features import USER_COLUMNS, to_tensors

        t0 = time.perf_counter()
        state = self.states.get(arm) or self.states["champion"]
        columns = users_columns(users, contexts, state.model.features)
        with torch.inference_mode():
            vectors = state.model.user(to_tensors({c: columns[c] for c in USER_COLUMNS})).numpy()
        state.served.record(vectors)
        excluded = [state.positions_of(u.recent_media_7d) for u in users]
        wants = [k + len(e) for e in excluded]
        unfiltered = [b for b, c in enumerate(contexts) if c.content_type not in TYPES]
        found = dict(
            zip(
                unfiltered,
                state.search_any_many(vectors[unfiltered], [wants[b] for b in unfiltered]),
                strict=True,
            )
        )
        out = []
        for b, context in enumerate(contexts):
            if b in found:
                positions, scores = self._with_type_floor(
                    state, vectors[b], *found[b], k, excluded[b]
                )
            else:
                positions, scores = state.search(vectors[b], {context.content_type: wants[b]})
            keep = ~np.isin(positions, excluded[b])
            positions, scores = positions[keep], scores[keep]
            order = select_with_type_floor(
                scores,
                state.items.content_types[positions],
                k,
                self.serving.min_candidates_per_type,
                TYPES,
            )
            out.append((positions[order], scores[order]))
        ms = (time.perf_counter() - t0) * 1000.0
        return [
            CandidateBatch(
                items=state.items.take(positions),
                scores=scores.astype(np.float32),
                model_version=f"{self.model_name}@{state.version}",
                index_size=state.size,
                compute_ms=ms,
                batch_size=len(users),
            )
            for positions, scores in out
        ]

    def _with_type_floor(
        self,
        state: LiveIndex,
        vector: np.ndarray,
        positions: np.ndarray,
        scores: np.ndarray,
        k: int,
        excluded: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A type left with too few candidates for the re-rank's diversity gets its own
        (selector-filtered) search, appended to the unfiltered search's candidates."""
        extra = len(excluded)
        types = state.items.content_types[positions]
        short = {
            t: k // 2 + extra
            for t in TYPES
            if (types == t).sum() < self.serving.min_candidates_per_type
        }
        if not short:
            return positions, scores
        more, more_scores = state.search(vector, short)
        fresh = ~np.isin(more, positions)
        return np.concatenate([positions, more[fresh]]), np.concatenate(
            [scores, more_scores[fresh]]
        )

    def stats(self) -> dict:
        return {
            arm: {
                "version": s.version,
                "size": s.size,
                "kind": s.index.params.kind,
                "tuned_on": s.index.params.tuned_on,
                "age_s": time.time() - s.built_at,
            }
            for arm, s in self.states.items()
        }

    def contains(self, media_ids: list[str]) -> dict[str, bool]:
        """Whether each item is retrievable by the champion (the canary in its own deployment):
        indexed and found by its own vector."""
        state = self.states.get("champion") or next(iter(self.states.values()))
        return {m: state.contains(m) for m in media_ids}

    def close(self) -> None:
        self._stop.set()
