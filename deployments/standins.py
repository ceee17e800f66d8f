"""Stand-ins for modules other engineers are writing right now, behind narrow Protocols.

Each Protocol is the whole surface the serving path uses. When the real module lands, point
the matching ``load_*`` / ``make_*`` factory below at it; nothing else in ``deployments/``
changes. Stood in for (report to the lead):

- ``OnlineStore``   <- app/features/online_store.py + data/trending.py + data/catalogue.py
  (Redis key layout below is this module's own: ``feedray:u:{user}``, ``feedray:i:{item}``,
  ``feedray:t:{TYPE}:{lang}``, set ``feedray:catalogue``).
- ``RetrievalModel`` <- app/models/two_tower.py (user tower from user / context features,
  item tower from content features; here: fixed random hashed embedding tables, seeded by
  the model version, so versions differ and cold items embed from their features).
- ``RankingModel``  <- app/models/ranker.py (here: a real TorchRec DLRM, random init seeded
  by the version, over the same sparse/dense features the real ranker will use).
- ``resolve_model_ref`` <- app/registry.py (MLflow aliases champion/challenger; here a
  literal ``name@version`` reference, or an alias looked up in MLflow when configured).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from app.serving.assembly import TrendingEntry
from app.serving.types import CandidateBatch, RequestContext, UserFeatures

USER_KEY = "feedray:u:{}"
ITEM_KEY = "feedray:i:{}"
TRENDING_KEY = "feedray:t:{}:{}"
CATALOGUE_SET = "feedray:catalogue"


def stable_hash(text: str) -> int:
    """A process-independent hash (never Python's salted ``hash()``)."""
    return zlib.crc32(text.encode())


# --------------------------------------------------------------------------- online store


class OnlineStore(Protocol):
    """Reads on the hot path, each one Redis round trip."""

    def read_user(self, user_id: str) -> dict | None: ...

    def read_items(self, media_ids: Sequence[str]) -> list[dict | None]: ...

    def read_trending(self, keys: Sequence[tuple[str, str]], k: int) -> list[list[TrendingEntry]]: ...

    def read_catalogue(self) -> list[dict]: ...


class RedisOnlineStore:
    """Stand-in online store over this module's key layout (packed JSON values, MGET)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read_user(self, user_id: str) -> dict | None:
        raw = self.client.get(USER_KEY.format(user_id))
        return orjson.loads(raw) if raw else None

    def read_items(self, media_ids: Sequence[str]) -> list[dict | None]:
        if not media_ids:
            return []
        raws = self.client.mget([ITEM_KEY.format(m) for m in media_ids])
        return [orjson.loads(r) if r else None for r in raws]

    def read_trending(self, keys: Sequence[tuple[str, str]], k: int) -> list[list[TrendingEntry]]:
        pipe = self.client.pipeline(transaction=False)
        for content_type, language in keys:
            pipe.get(TRENDING_KEY.format(content_type, language))
        out = []
        for raw in pipe.execute():
            rows = orjson.loads(raw) if raw else []
            out.append([TrendingEntry(*row) for row in rows[:k]])
        return out

    def read_catalogue(self) -> list[dict]:
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in self.client.smembers(CATALOGUE_SET))
        out: list[dict] = []
        for lo in range(0, len(ids), 5_000):
            out.extend(r for r in self.read_items(ids[lo : lo + 5_000]) if r)
        return out


def item_record(
    media_id: str,
    creator_id: str,
    content_type: str,
    category: str,
    language: str,
    duration_s: float,
    published_at_s: float,
    *,
    starts: float = 0.0,
    completes: float = 0.0,
    likes: float = 0.0,
    dislikes: float = 0.0,
    views_1h: float = 0.0,
) -> dict:
    return {
        "media_id": media_id,
        "creator_id": creator_id,
        "content_type": content_type,
        "category": category,
        "language": language,
        "duration_s": float(duration_s),
        "published_at_s": float(published_at_s),
        "starts": float(starts),
        "completes": float(completes),
        "likes": float(likes),
        "dislikes": float(dislikes),
        "views_1h": float(views_1h),
    }


def write_items(client: Any, records: Iterable[dict], chunk: int = 5_000) -> int:
    """Write item records and add them to the catalogue set (what the catalogue hook does)."""
    n = 0
    batch: list[dict] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.mset({ITEM_KEY.format(r["media_id"]): orjson.dumps(r) for r in batch})
        pipe.sadd(CATALOGUE_SET, *[r["media_id"] for r in batch])
        pipe.execute()

    for record in records:
        batch.append(record)
        n += 1
        if len(batch) >= chunk:
            flush()
            batch = []
    if batch:
        flush()
    return n


def write_user(client: Any, user_id: str, record: dict) -> None:
    client.set(USER_KEY.format(user_id), orjson.dumps(record))


def write_trending(client: Any, content_type: str, language: str, entries: Sequence[TrendingEntry]) -> None:
    rows = [[e.media_id, e.score, e.content_type, e.creator_id, e.category, e.language] for e in entries]
    client.set(TRENDING_KEY.format(content_type, language), orjson.dumps(rows))


# --------------------------------------------------------------------------- item table


@dataclass
class ItemTable:
    """The static catalogue attributes the index keeps per row."""

    media_ids: list[str]
    content_types: list[str]
    creator_ids: list[str]
    categories: list[str]
    languages: list[str]
    durations: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.media_ids)

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> ItemTable:
        return cls(
            [r["media_id"] for r in records],
            [r["content_type"] for r in records],
            [r["creator_id"] for r in records],
            [r["category"] for r in records],
            [r["language"] for r in records],
            np.asarray([r.get("duration_s", 300.0) for r in records], dtype=np.float32),
        )


# --------------------------------------------------------------------------- models


class RetrievalModel(Protocol):
    version: str
    dim: int

    def item_vectors(self, items: ItemTable) -> np.ndarray: ...

    def user_vector(self, user: UserFeatures, context: RequestContext) -> np.ndarray: ...


class RankingModel(Protocol):
    version: str

    def score(
        self,
        user: UserFeatures,
        context: RequestContext,
        candidates: CandidateBatch,
        item_records: Sequence[dict | None],
    ) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)).astype(np.float32)


class HashedTwoTower:
    """Stand-in two-tower: hashed embedding tables over content / user features.

    The user tower sees only features (categories, language, preferred type), so a
    cold-start user with just a request language still gets a vector; the item tower sees
    only content features, so a just-published item embeds with no history.
    """

    BUCKETS = 4_096

    def __init__(self, version: str, dim: int = 64) -> None:
        self.version = version
        self.dim = dim
        rng = np.random.default_rng(stable_hash(f"two_tower:{version}"))
        self.table = rng.standard_normal((self.BUCKETS, dim)).astype(np.float32) / math.sqrt(dim)

    def _rows(self, prefix: str, values: Sequence[str]) -> np.ndarray:
        idx = np.fromiter((stable_hash(f"{prefix}:{v}") % self.BUCKETS for v in values), np.int64, len(values))
        return self.table[idx]

    def item_vectors(self, items: ItemTable) -> np.ndarray:
        return _unit(
            1.0 * self._rows("cat", items.categories)
            + 0.6 * self._rows("lang", items.languages)
            + 0.5 * self._rows("type", items.content_types)
            + 0.6 * self._rows("creator", items.creator_ids)
            + 0.4 * self._rows("item", items.media_ids)
        )

    def user_vector(self, user: UserFeatures, context: RequestContext) -> np.ndarray:
        parts = np.zeros(self.dim, np.float32)
        if user.top_categories:
            parts += self._rows("cat", list(user.top_categories)).mean(axis=0)
        language = context.language or user.preferred_language
        if language:
            parts += 0.6 * self._rows("lang", [language])[0]
        wanted = context.content_type or user.preferred_content_type
        if wanted in ("VIDEO", "AUDIO"):
            parts += 0.5 * self._rows("type", [wanted])[0]
        if not parts.any():
            parts += self._rows("user", [user.user_id])[0]
        return _unit(parts)


class TorchRecRanker:
    """A TorchRec DLRM over sparse ids and dense features (random init: a stand-in)."""

    SPARSE = ("category", "creator", "language", "content_type", "user_language", "user_type")
    BUCKETS = {"category": 64, "creator": 4_096, "language": 32, "content_type": 4, "user_language": 32, "user_type": 4}
    DENSE = 8

    def __init__(self, version: str, threads: int = 1) -> None:
        import torch
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
        from torchrec.models.dlrm import DLRM

        torch.set_num_threads(threads)
        self.version = version
        self._torch = torch
        torch.manual_seed(stable_hash(f"ranker:{version}"))
        tables = [
            EmbeddingBagConfig(name=f"t_{f}", embedding_dim=16, num_embeddings=self.BUCKETS[f], feature_names=[f])
            for f in self.SPARSE
        ]
        self.model = DLRM(
            embedding_bag_collection=EmbeddingBagCollection(tables=tables, device=torch.device("cpu")),
            dense_in_features=self.DENSE,
            dense_arch_layer_sizes=[32, 16],
            over_arch_layer_sizes=[32, 1],
        ).eval()

    def _sparse(self, candidates: CandidateBatch, user: UserFeatures, context: RequestContext):
        from torchrec import KeyedJaggedTensor

        n = len(candidates)
        lang = context.language or user.preferred_language or "all"
        columns = {
            "category": [stable_hash(c) for c in candidates.categories],
            "creator": [stable_hash(c) for c in candidates.creator_ids],
            "language": [stable_hash(c) for c in candidates.languages],
            "content_type": [0 if t == "VIDEO" else 1 for t in candidates.content_types],
            "user_language": [stable_hash(lang)] * n,
            "user_type": [("VIDEO", "AUDIO", "MIXED").index(user.preferred_content_type)] * n,
        }
        values = np.concatenate([np.asarray(columns[f], np.int64) % self.BUCKETS[f] for f in self.SPARSE])
        return KeyedJaggedTensor.from_lengths_sync(
            keys=list(self.SPARSE),
            values=self._torch.from_numpy(values),
            lengths=self._torch.ones(n * len(self.SPARSE), dtype=self._torch.int32),
        )

    def _dense(self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, records: Sequence[dict | None]) -> np.ndarray:
        from app.features.definitions import completion_rate, like_ratio, publish_age_hours

        def col(name: str, default: float = 0.0) -> np.ndarray:
            return np.asarray([(r or {}).get(name, default) for r in records], np.float64)

        now = time.time()
        lang = context.language or user.preferred_language
        computed = any(r is not None and "like_ratio" in r for r in records)  # the team's store
        dense = np.stack(
            [
                np.asarray(candidates.scores, np.float64),
                col("like_ratio", 0.5) if computed else like_ratio(col("likes"), col("dislikes")),
                col("completion_rate", 0.25) if computed else completion_rate(col("completes"), col("starts")),
                np.log1p(col("views_1h")),
                np.log1p(col("publish_age_hours") if computed else publish_age_hours(col("published_at_s", now), now)),
                np.log1p(col("duration_s", 300.0)) / 10.0,
                np.asarray([float(lang is not None and l == lang) for l in candidates.languages]),
                np.asarray([float(t == user.preferred_content_type) for t in candidates.content_types]),
            ],
            axis=1,
        )
        return dense.astype(np.float32)

    def score(self, user, context, candidates, item_records) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0, np.float32)
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(
                dense_features=torch.from_numpy(self._dense(user, context, candidates, item_records)),
                sparse_features=self._sparse(candidates, user, context),
            )
        return torch.sigmoid(logits).reshape(-1).numpy().astype(np.float32)


def resolve_model_ref(ref: str, model_name: str, settings: Any | None = None) -> str:
    """``name@version`` or a bare version -> the version string; ``alias:<a>`` -> MLflow.

    Aliases go through the team's registry (``app.registry.get_version`` on the configured
    tracking URI); anything else is taken literally, so a deploy config can pin versions
    without a registry.
    """
    if ref.startswith("alias:"):
        from app.registry import get_version, tracking_uri

        alias = ref.removeprefix("alias:")
        version = get_version(tracking_uri(settings), model_name, alias)
        if version is None:
            raise LookupError(f"model {model_name!r} has no alias {alias!r} in the registry")
        return str(version.version)
    return ref.split("@", 1)[1] if "@" in ref else ref


def load_retrieval_model(version: str, dim: int) -> RetrievalModel:
    return HashedTwoTower(version, dim)


def load_ranking_model(version: str) -> RankingModel:
    return TorchRecRanker(version)


# --------------------------------------------------------------------------- the real store


class FeedrayStoreAdapter:
    """``OnlineStore`` over the team's real store (app/features/online_store.py, data/trending.py,
    data/catalogue.py), selected with ``ServingExtras.online_store = "feedray"``.

    Mapping: a user with no plays in 7 days and nothing recent is unknown (cold start);
    item records carry the store's computed features (like_ratio, completion_rate,
    views_1h, publish_age_hours), which the ranker prefers over raw counters; trending
    rows are enriched with one ``item_metadata`` MGET (creator codes -> names via vocab).
    """

    def __init__(self, settings: Any, timeout_s: float) -> None:
        from app.features.online_store import OnlineStore as _Store

        self.settings = settings
        self.store = _Store.from_settings(settings, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def read_user(self, user_id: str) -> dict | None:
        f = self.store.read_user(user_id)
        if f.plays_7d == 0 and not f.recent_media_7d:
            return None
        return {
            "preferred_content_type": f.preferred_content_type,
            "preferred_language": f.preferred_language,
            "top_categories": list(f.top_categories_7d),
            "recent_media": list(f.recent_media_7d),
        }

    def read_items(self, media_ids: Sequence[str]) -> list[dict | None]:
        if not media_ids:
            return []
        features = self.store.read_items(list(media_ids))
        return [
            ({**r, "duration_s": r["duration"]} if r["found"] else None) for r in features.records()
        ]

    def read_trending(self, keys: Sequence[tuple[str, str]], k: int) -> list[list[TrendingEntry]]:
        from data.trending import read_trending

        out = []
        for content_type, language in keys:
            rows = read_trending(store=self.store, content_type=content_type, language=None if language == "all" else language, limit=k)
            meta = self.store.item_metadata([m for m, _ in rows])
            creators = self.store.names("creator", np.asarray([meta[m].creator for m, _ in rows if m in meta], np.int64))
            entries, j = [], 0
            for media_id, score in rows:
                if media_id in meta:
                    m = meta[media_id]
                    entries.append(TrendingEntry(media_id, score, m.content_type, str(creators[j]), m.category, m.language))
                    j += 1
            out.append(entries)
        return out

    def read_catalogue(self) -> list[dict]:
        from app.storage import catalogue_root
        from data.catalogue import read_catalogue

        table = read_catalogue(catalogue_root(self.settings))
        cols = table.to_pydict()
        return [
            {"media_id": m, "creator_id": c, "content_type": t, "category": g, "language": l, "duration_s": s}
            for m, c, t, g, l, s in zip(cols["media_id"], cols["creator_id"], cols["content_type"], cols["category"], cols["language"], cols["duration_s"])
        ]


def make_online_store(settings: Any, timeout_s: float, kind: str = "standin") -> OnlineStore:
    """The online store the serving path reads: ``standin`` (this module) or ``feedray``."""
    if kind == "feedray":
        return FeedrayStoreAdapter(settings, timeout_s)
    import redis

    kwargs = settings.redis.client_kwargs() | {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    return RedisOnlineStore(redis.Redis(**kwargs))
