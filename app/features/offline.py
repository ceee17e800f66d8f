"""Offline features from the Parquet event store, with the one set of feature definitions.

Two kinds of output:

* **Long-term interaction features** (the offline group): per-user watch sequences
  (plays in time order), long-term category affinity and creator affinity, both
  signal-weighted with ``settings.events.signal_weights``.
* **The online groups, as of any time T**: the user and content features the Redis store
  serves (recent_media_7d, top_categories_7d, avg_session_duration, preferred_language,
  preferred_content_type, play_count_24h, views_1h, like_ratio, completion_rate,
  publish_age_hours, trending_score ...), recomputed from raw events that happened
  **strictly before T** and turned into features by the functions of
  ``app.features.definitions`` (one definition, two uses). Windows follow
  ``definitions.windowed_sum``: the ``window_s / bucket_s`` most recent buckets up to and
  including T's bucket (:func:`window_start_s` is that window's first second; a test checks
  the two agree). The 7-day user windows are half-open like the online store's: their last
  bucket is that of the last millisecond before T (``definitions.last_second_before``), so
  at a midnight T they are the 7 full days ``[T - 7 d, T)``, as in ``train.data``.

Raw-count semantics (the contract the online store must follow as well; see the report):

==========================  ==========================================================
feature                     raw counts (events with ts < T)
==========================  ==========================================================
recent_media_7d             media ids of ``media_started`` in the rolling (T - 7 d, T)
                            window, newest first, distinct, at most ``RECENT_MEDIA_LIMIT``
top_categories_7d           ``top_k_keys`` of per-category ``media_started`` counts, 7d
preferred_language          ``argmax_key`` of per-language ``media_started`` counts, 7d
preferred_content_type      ``preferred_content_type(video starts 7d, audio starts 7d)``
avg_session_duration        ``avg_session_duration(sum consumed_seconds 7d, sessions 7d)``;
                            a session counts in the bucket of its first event
play_count_24h / views_1h   item ``media_started`` counts, 24h (hourly) / 1h (5-minute)
like_ratio, completion_rate item lifetime likes/dislikes, completes/starts
publish_age_hours           ``publish_age_hours(published_at, T)``
trending_score              ``trending_score(views_1h, age, completion, like_ratio)``
==========================  ==========================================================

Everything here is vectorised pandas/numpy over any set of events that holds *all* events
of the users (or items) it is asked about, so the same functions run on one machine or
inside Ray Data ``groupby(...).map_groups`` (see :func:`compute_offline_features`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from app.features import definitions as d
from app.schemas import ContentType, EventType

if TYPE_CHECKING:
    import ray.data

    from app.config import FeedraySettings

PLAY = str(d.PLAY_EVENT)
TIMED = {str(t) for t in d.TIMED_EVENTS}
MS = 1000


class OfflineFeatureSettings(BaseModel):
    """Proposed as ``FeedraySettings.offline_features`` (not in app.config yet)."""

    watch_sequence_max_len: int | None = Field(1_000, ge=1)  # newest plays kept per user
    output: str | None = None  # default <state_dir>/offline/features


# --- the time-window primitive ---------------------------------------------------------------


window_start_s = d.window_start_s  # first second of the bucketed window ending at now_s


def _ranks(*arrays: np.ndarray) -> list[np.ndarray]:
    """Dense ranks (from 1) of int64 timestamps across all arrays, order-preserving."""
    allv = np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays])
    uniq = np.unique(allv)
    return [np.searchsorted(uniq, np.asarray(a, dtype=np.int64)) + 1 for a in arrays]


class AsOf:
    """Sums over events of one key strictly before a query time (and at/after a lower bound).

    ``AsOf(keys, ts_ms).sum(values, qkeys, qts_ms, lower_ms)`` = for each query, the sum of
    ``values`` over events with the same key and ``lower_ms <= ts < qts_ms``. Sort once, then
    every sum is one cumulative sum and two ``searchsorted``: O((n + q) log n).
    """

    def __init__(self, keys: np.ndarray, ts_ms: np.ndarray) -> None:
        self.codes, self.uniques = pd.factorize(pd.Series(keys), sort=False)
        self.ts = np.asarray(ts_ms, dtype=np.int64)
        self.order = np.lexsort((self.ts, self.codes))

    def _combined(self, codes: np.ndarray, ts_ranks: np.ndarray) -> np.ndarray:
        return codes.astype(np.int64) * (1 << 32) + ts_ranks.astype(np.int64)

    def index(
        self, qkeys: np.ndarray, qts_ms: np.ndarray, lower_ms: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lo, hi, found): sorted-event slices [lo, hi) matching each query."""
        qcodes = pd.Index(self.uniques).get_indexer(pd.Series(qkeys))
        found = qcodes >= 0
        qcodes = np.where(found, qcodes, 0)
        lower = (
            np.full(len(qcodes), np.iinfo(np.int64).min // 4)
            if lower_ms is None
            else np.asarray(lower_ms, np.int64)
        )
        ev_r, q_r, lo_r = _ranks(self.ts[self.order], np.asarray(qts_ms, np.int64), lower)
        sorted_keys = self._combined(self.codes[self.order], ev_r)
        hi = np.searchsorted(sorted_keys, self._combined(qcodes, q_r), side="left")  # ts < T
        lo = np.searchsorted(sorted_keys, self._combined(qcodes, lo_r), side="left")  # ts >= lower
        hi = np.where(found, hi, 0)
        lo = np.where(found, np.minimum(lo, hi), 0)
        return lo, hi, found

    def sum(
        self, values: Any, qkeys: np.ndarray, qts_ms: np.ndarray, lower_ms: np.ndarray | None = None
    ) -> np.ndarray:
        lo, hi, _ = self.index(qkeys, qts_ms, lower_ms)
        v = np.broadcast_to(np.asarray(values, dtype=np.float64), self.ts.shape)[self.order]
        cum = np.concatenate([[0.0], np.cumsum(v)])
        return cum[hi] - cum[lo]


# --- event preparation -----------------------------------------------------------------------


def _weights(signal_weights: Mapping[Any, float] | None) -> dict[str, float]:
    if signal_weights is None:
        from app.config import DEFAULT_SIGNAL_WEIGHTS

        signal_weights = DEFAULT_SIGNAL_WEIGHTS
    return {str(k): float(v) for k, v in signal_weights.items()}


def prepare_events(events: pd.DataFrame, catalogue: pd.DataFrame | None = None) -> pd.DataFrame:
    """Events with ``ts_ms`` (int64), plain-string categoricals and, if given, catalogue columns."""
    frame = events.copy()
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str).astype(object)
        elif pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
            # str / ArrowDtype(string) -> plain objects, so every code path sees the same types
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    if catalogue is not None:
        cat = catalogue.drop_duplicates("media_id", keep="last").set_index("media_id")
        for col in ["creator_id", "category", "language", "duration_s", "published_at"]:
            if col in cat.columns and (col not in frame.columns or frame[col].isna().any()):
                looked_up = frame["media_id"].map(cat[col])
                frame[col] = (
                    looked_up
                    if col not in frame.columns
                    else frame[col].where(frame[col].notna(), looked_up)
                )
    frame["ts_ms"] = _to_ms(frame["timestamp"])
    return frame


def _to_ms(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(np.int64)
    values = pd.to_datetime(column, utc=True)
    return (values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


def _as_ms(as_of: Any, n: int) -> np.ndarray:
    if isinstance(as_of, pd.Series | np.ndarray | list):
        series = pd.Series(as_of)
        return np.asarray(_to_ms(series), dtype=np.int64)
    return np.full(n, int(_to_ms(pd.Series([as_of]))[0]), dtype=np.int64)


# --- user group, as of T ---------------------------------------------------------------------


def user_features_asof(events: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """The online user group for each (user_id, as_of) row of ``queries``, from events < as_of.

    ``events`` come from :func:`prepare_events` (need event_type, user_id, media_id,
    content_type, session_id, consumed_fraction, duration_s, category, language, ts_ms).
    Returns one row per query, in order, with the query's columns first.
    """
    q_users = queries["user_id"].to_numpy(object)
    t_ms = _as_ms(queries["as_of"], len(queries))
    # half-open [.., T): the window of the last millisecond before T (= the online store's
    # d.last_second_before(T) for whole-second T)
    lower7 = window_start_s((t_ms - 1) // MS, d.WINDOW_7D_S, d.BUCKET_7D_S) * MS
    out = queries.reset_index(drop=True).copy()
    n = len(out)
    ev = events
    plays = ev[ev["event_type"] == PLAY]
    p_index = AsOf(plays["user_id"].to_numpy(object), plays["ts_ms"].to_numpy())

    def play_counts(column: str) -> dict[str, np.ndarray]:
        return {
            str(value): p_index.sum((plays[column] == value).to_numpy(), q_users, t_ms, lower7)
            for value in pd.unique(plays[column].dropna())
        }

    by_category = play_counts("category") if "category" in plays else {}
    by_language = play_counts("language") if "language" in plays else {}
    video = p_index.sum(
        (plays["content_type"] == ContentType.VIDEO.value).to_numpy(), q_users, t_ms, lower7
    )
    audio = p_index.sum(
        (plays["content_type"] == ContentType.AUDIO.value).to_numpy(), q_users, t_ms, lower7
    )
    out["top_categories_7d"] = [
        d.top_k_keys({k: v[i] for k, v in by_category.items()}) for i in range(n)
    ]
    out["preferred_language"] = pd.Series(
        [d.argmax_key({k: v[i] for k, v in by_language.items()}) for i in range(n)], dtype=object
    )
    out["preferred_content_type"] = (
        d.preferred_content_type(video, audio) if n else np.array([], dtype=str)
    )
    out["video_plays_7d"], out["audio_plays_7d"] = video, audio

    # recent_media_7d: distinct plays in the rolling (T - 7 d, T) window, newest first (the
    # online store keeps a sorted set by play time, so this window is rolling, not bucketed)
    lo, hi, _ = p_index.index(q_users, t_ms, t_ms - d.WINDOW_7D_S * MS + 1)
    media_sorted = plays["media_id"].to_numpy(object)[p_index.order]
    recent = []
    for a, b in zip(lo, hi, strict=True):
        seen: dict[str, None] = {}
        for m in media_sorted[a:b][::-1]:
            if m not in seen:
                seen[m] = None
                if len(seen) >= d.RECENT_MEDIA_LIMIT:
                    break
        recent.append(list(seen))
    out["recent_media_7d"] = recent

    # avg_session_duration: consumed seconds / sessions, both over the 7-day window
    all_index = AsOf(ev["user_id"].to_numpy(object), ev["ts_ms"].to_numpy())
    fraction = (
        ev["consumed_fraction"].to_numpy(np.float64, na_value=np.nan)
        if "consumed_fraction" in ev
        else np.full(len(ev), np.nan)
    )
    duration = (
        ev["duration_s"].to_numpy(np.float64, na_value=np.nan)
        if "duration_s" in ev
        else np.full(len(ev), np.nan)
    )
    consumed = np.array(
        [
            d.consumed_seconds(t, None if np.isnan(f) else f, 0.0 if np.isnan(s) else s)
            for t, f, s in zip(ev["event_type"].to_numpy(object), fraction, duration, strict=True)
        ],
        dtype=np.float64,
    )
    session_key = ev["user_id"].astype(str) + "\x1f" + ev["session_id"].astype(str)
    has_session = ev["session_id"].notna().to_numpy()
    first_of_session = np.zeros(len(ev), dtype=bool)
    if len(ev):
        first_idx = (
            pd.Series(ev["ts_ms"].to_numpy()).groupby(session_key.to_numpy()).idxmin().to_numpy()
        )
        first_of_session[first_idx] = True
    first_of_session &= has_session
    seconds = all_index.sum(consumed, q_users, t_ms, lower7)
    sessions = all_index.sum(first_of_session.astype(np.float64), q_users, t_ms, lower7)
    out["consumed_seconds_7d"], out["sessions_7d"] = seconds, sessions
    out["avg_session_duration"] = d.avg_session_duration(seconds, sessions)
    subs = (ev["event_type"] == str(EventType.SUBSCRIPTION_TO_CREATOR)).to_numpy()
    out["subscription_count"] = all_index.sum(subs.astype(np.float64), q_users, t_ms)
    return out


def affinity_asof(
    events: pd.DataFrame,
    queries: pd.DataFrame,
    key: str,
    signal_weights: Mapping[Any, float] | None = None,
) -> np.ndarray:
    """Long-term signal-weighted affinity of each query's user for its ``key`` value
    (``category`` or ``creator_id``), from the user's events strictly before ``as_of``."""
    weights = _weights(signal_weights)
    w = events["event_type"].map(weights).astype("float64").fillna(0.0).to_numpy(np.float64)
    pair = events["user_id"].astype(str) + "\x1f" + events[key].astype(str)
    index = AsOf(pair.to_numpy(object), events["ts_ms"].to_numpy())
    qpair = queries["user_id"].astype(str) + "\x1f" + queries[key].astype(str)
    return index.sum(w, qpair.to_numpy(object), _as_ms(queries["as_of"], len(queries)))


# --- content group, as of T ------------------------------------------------------------------


def item_features_asof(
    events: pd.DataFrame, queries: pd.DataFrame, catalogue: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The online content group (+ trending) for each (media_id, as_of) of ``queries``."""
    q_items = queries["media_id"].to_numpy(object)
    t_ms = _as_ms(queries["as_of"], len(queries))
    t_s = t_ms // MS
    out = queries.reset_index(drop=True).copy()
    index = AsOf(events["media_id"].to_numpy(object), events["ts_ms"].to_numpy())
    etype = events["event_type"]
    counts = {
        c: index.sum((etype == str(t)).to_numpy(), q_items, t_ms)
        for t, c in d.ITEM_COUNTER_OF_EVENT.items()
    }
    starts = (etype == PLAY).to_numpy()
    out["play_count_24h"] = index.sum(
        starts, q_items, t_ms, window_start_s(t_s, d.WINDOW_24H_S, d.BUCKET_24H_S) * MS
    )
    out["views_1h"] = index.sum(
        starts, q_items, t_ms, window_start_s(t_s, d.WINDOW_1H_S, d.BUCKET_1H_S) * MS
    )
    for name in ("starts", "completes", "likes", "dislikes"):
        out[f"item_{name}"] = counts[name]
    out["like_ratio"] = d.like_ratio(counts["likes"], counts["dislikes"])
    out["completion_rate"] = d.completion_rate(counts["completes"], counts["starts"])
    meta = _item_meta(events, catalogue)
    for col in ["category", "duration_s", "content_type", "creator_id", "language", "published_at"]:
        if col in meta.columns:
            out[f"item_{col}" if col in out.columns else col] = (
                pd.Series(q_items).map(meta[col]).to_numpy()
            )
    published = out["published_at"] if "published_at" in out else pd.Series([pd.NaT] * len(out))
    pub_s = np.asarray(_to_ms(published.fillna(pd.Timestamp(0, tz="UTC"))), np.float64) / MS
    age = d.publish_age_hours(pub_s, t_s)
    out["publish_age_hours"] = np.where(published.isna().to_numpy(), np.nan, age)
    out["trending_score"] = d.trending_score(
        out["views_1h"], np.nan_to_num(age), out["completion_rate"], out["like_ratio"]
    )
    return out


def _item_meta(events: pd.DataFrame, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    cols = [
        "media_id",
        "category",
        "duration_s",
        "content_type",
        "creator_id",
        "language",
        "published_at",
    ]
    if catalogue is not None and len(catalogue):
        meta = catalogue[[c for c in cols if c in catalogue.columns]].copy()
        for c in meta.columns:
            if isinstance(meta[c].dtype, pd.CategoricalDtype):
                meta[c] = meta[c].astype(str)
    else:  # the enrichment stored with the events (subscriptions carry the creator too)
        meta = events[[c for c in cols if c in events.columns]]
        if "enriched" in events.columns:
            meta = meta[events["enriched"].fillna(False).to_numpy(bool)]
    return meta.drop_duplicates("media_id", keep="last").set_index("media_id")


# --- long-term interaction group -------------------------------------------------------------


def watch_sequences(events: pd.DataFrame, max_len: int | None = None) -> pd.DataFrame:
    """Per user: plays (``media_started``) in time order: media_ids, timestamps (ms), categories."""
    plays = events[events["event_type"] == PLAY].sort_values(
        ["user_id", "ts_ms", "media_id"], kind="stable"
    )
    if max_len is not None:
        plays = plays.groupby("user_id", sort=False).tail(max_len)
    grouped = plays.groupby("user_id", sort=True)
    result = pd.DataFrame(
        {
            "media_ids": grouped["media_id"].agg(list),
            "timestamps_ms": grouped["ts_ms"].agg(list),
            "content_types": grouped["content_type"].agg(list),
        }
    )
    if "category" in plays.columns:
        result["categories"] = grouped["category"].agg(
            lambda s: [None if pd.isna(x) else x for x in s]
        )
    result["length"] = result["media_ids"].map(len)
    return result.reset_index()


def interaction_affinity(
    events: pd.DataFrame, key: str, signal_weights: Mapping[Any, float] | None = None
) -> pd.DataFrame:
    """Per (user, ``key``): signal-weighted ``score``, ``events``, and ``share`` of the user's
    positive mass (a distribution over keys, 0 for non-positive scores)."""
    weights = _weights(signal_weights)
    frame = events[events[key].notna()].assign(
        _w=lambda f: f["event_type"].map(weights).astype("float64").fillna(0.0)
    )
    agg = (
        frame.groupby(["user_id", key], sort=True)
        .agg(score=("_w", "sum"), events=("_w", "size"))
        .reset_index()
    )
    positive = agg["score"].clip(lower=0.0)
    total = positive.groupby(agg["user_id"]).transform("sum")
    agg["share"] = np.divide(positive, total, out=np.zeros(len(agg)), where=total.to_numpy() > 0)
    if key == "creator_id":
        subs = events[events["event_type"] == str(EventType.SUBSCRIPTION_TO_CREATOR)]
        own = (
            subs["subscribed_creator_id"].fillna(subs[key])
            if "subscribed_creator_id" in subs
            else subs[key]
        )
        subscribed = set(zip(subs["user_id"], own, strict=True))
        agg["subscribed"] = [
            (u, c) in subscribed for u, c in zip(agg["user_id"], agg[key], strict=True)
        ]
    return agg


def category_affinity(
    events: pd.DataFrame, signal_weights: Mapping[Any, float] | None = None
) -> pd.DataFrame:
    return interaction_affinity(events, "category", signal_weights)


def creator_affinity(
    events: pd.DataFrame, signal_weights: Mapping[Any, float] | None = None
) -> pd.DataFrame:
    return interaction_affinity(events, "creator_id", signal_weights)


# --- Ray Data over the Parquet store ---------------------------------------------------------


def read_store(root: str, as_of: Any = None, start: Any = None) -> ray.data.Dataset:
    """The committed events under ``root`` as a Ray Dataset, optionally ``start <= ts < as_of``
    (whole date=/hour= folders outside the range are never opened)."""
    import ray.data

    from data.ingest import event_files, resolve_fs

    fs, base = resolve_fs(root)
    lo = (
        None
        if start is None
        else pd.Timestamp(start).tz_convert("UTC").floor("h")
        if pd.Timestamp(start).tzinfo
        else pd.Timestamp(start, tz="UTC").floor("h")
    )
    hi = (
        None
        if as_of is None
        else pd.Timestamp(as_of).tz_convert("UTC")
        if pd.Timestamp(as_of).tzinfo
        else pd.Timestamp(as_of, tz="UTC")
    )
    files = []
    for path in event_files(root):
        parts = path[len(base) + 1 :].split("/")
        hour = pd.Timestamp(f"{parts[0][5:]}T{parts[1][5:]}:00", tz="UTC")
        if (lo is None or hour >= lo) and (hi is None or hour <= hi):
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no events under {root} in range")
    ds = ray.data.read_parquet(files, filesystem=fs)
    if hi is not None or start is not None:
        hi_ms = None if hi is None else int(hi.value // 1_000_000)
        lo_ms = (
            None
            if start is None
            else int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
            if pd.Timestamp(start).tzinfo is None
            else int(pd.Timestamp(start).value // 1_000_000)
        )

        def keep(batch: pd.DataFrame) -> pd.DataFrame:
            ms = _to_ms(batch["timestamp"])
            mask = np.ones(len(batch), dtype=bool)
            if hi_ms is not None:
                mask &= ms < hi_ms
            if lo_ms is not None:
                mask &= ms >= lo_ms
            return batch[mask]

        ds = ds.map_batches(keep, batch_format="pandas")
    return ds


def _user_group(
    batch: pd.DataFrame, *, as_of_ms: int, weights: dict[str, float], max_len: int | None
) -> pd.DataFrame:
    """One user's (or a few users') events -> one row of every user-level offline feature."""
    ev = prepare_events(batch)
    users = pd.DataFrame({"user_id": sorted(ev["user_id"].unique())})
    users["as_of"] = pd.to_datetime(as_of_ms, unit="ms", utc=True)
    feats = user_features_asof(ev, users)
    seq = watch_sequences(ev[ev["ts_ms"] < as_of_ms], max_len).set_index("user_id")
    cats = category_affinity(ev[ev["ts_ms"] < as_of_ms], weights)
    creators = creator_affinity(ev[ev["ts_ms"] < as_of_ms], weights)
    feats["watch_media_ids"] = (
        feats["user_id"].map(seq["media_ids"]).map(lambda v: v if isinstance(v, list) else [])
    )
    feats["watch_timestamps_ms"] = (
        feats["user_id"].map(seq["timestamps_ms"]).map(lambda v: v if isinstance(v, list) else [])
    )
    feats["category_affinity"] = (
        feats["user_id"]
        .map(
            cats.groupby("user_id").apply(
                lambda g: dict(zip(g["category"], g["score"], strict=True)), include_groups=False
            )
        )
        .map(lambda v: _kv(v))
    )
    feats["creator_affinity"] = (
        feats["user_id"]
        .map(
            creators.groupby("user_id").apply(
                lambda g: dict(zip(g["creator_id"], g["score"], strict=True)), include_groups=False
            )
        )
        .map(lambda v: _kv(v))
    )
    return feats


def _kv(value: Any) -> list[dict]:
    """dict -> list of {key, score} structs, highest first (Parquet-friendly map)."""
    if not isinstance(value, dict):
        return []
    return [
        {"key": k, "score": float(s)}
        for k, s in sorted(value.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def _item_group(batch: pd.DataFrame, *, as_of_ms: int) -> pd.DataFrame:
    ev = prepare_events(batch)
    items = pd.DataFrame({"media_id": sorted(ev["media_id"].unique())})
    items["as_of"] = pd.to_datetime(as_of_ms, unit="ms", utc=True)
    return item_features_asof(ev, items)


def _default_partitions() -> int:
    """Shuffle partitions: one per CPU of the cluster (Ray's default of 200 is slow on small data)."""
    import ray

    return max(2, int(ray.cluster_resources().get("CPU", 2)))


BUCKET_COLUMN = "_bucket"


@contextmanager
def task_based_shuffle() -> Iterator[None]:
    """Run Ray Data shuffles with the task-based sort shuffle while inside the block.

    The default hash shuffle starts aggregator actors (a process each), which costs more
    than the whole job on the small buckets these jobs shuffle (a few columns per key).
    """
    from ray.data.context import DataContext, ShuffleStrategy

    ctx = DataContext.get_current()
    previous = ctx.shuffle_strategy
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield
    finally:
        ctx.shuffle_strategy = previous


def bucketed_groups(
    ds: ray.data.Dataset, key: str, fn: Any, *, buckets: int, fn_kwargs: dict
) -> ray.data.Dataset:
    """``fn`` over groups of whole keys: rows are tagged with a stable hash bucket of ``key``
    and grouped by bucket, so ``fn`` sees *all* rows of each of its keys in one vectorised call
    (instead of one Python call per user/item)."""

    def tag(batch: pd.DataFrame) -> pd.DataFrame:
        hashed = pd.util.hash_array(batch[key].astype(str).to_numpy(object))  # siphash, fixed key
        return batch.assign(**{BUCKET_COLUMN: (hashed % np.uint64(buckets)).astype(np.int64)})

    def call(batch: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
        return fn(batch.drop(columns=[BUCKET_COLUMN]), **kwargs)

    return (
        ds.map_batches(tag, batch_format="pandas")
        .groupby(BUCKET_COLUMN, num_partitions=min(buckets, _default_partitions()))
        .map_groups(call, batch_format="pandas", fn_kwargs=fn_kwargs)
    )


def compute_offline_features(
    settings: FeedraySettings,
    root: str | None = None,
    output: str | None = None,
    as_of: Any = None,
    *,
    config: OfflineFeatureSettings | None = None,
    num_partitions: int | None = None,
) -> dict[str, str]:
    """Ray Data job: user features (online user group as of ``as_of`` + watch sequence +
    category/creator affinity) and item features, as Parquet under ``output``.

    Returns {"users": path, "items": path}. ``as_of`` defaults to now.
    """
    from app.ray_runtime import connect_ray
    from app.storage import offline_root, resolve_fs

    cfg = config or OfflineFeatureSettings()
    root = root or offline_root(settings)
    output = (
        output
        or cfg.output
        or str(settings.state_dir.expanduser().resolve() / "offline" / "features")
    )
    as_of_ts = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
    as_of_ts = (
        as_of_ts.tz_localize("UTC") if as_of_ts.tzinfo is None else as_of_ts.tz_convert("UTC")
    )
    as_of_ms = int(as_of_ts.value // 1_000_000)
    connect_ray(settings)
    ds = read_store(root, as_of=as_of_ts)
    weights = _weights(settings.events.signal_weights)
    stamp = f"as_of={as_of_ts:%Y-%m-%dT%H-%M-%S}"
    fs, _base = resolve_fs(output)
    paths = {"users": f"{output}/users/{stamp}", "items": f"{output}/items/{stamp}"}
    for path in paths.values():
        sub = resolve_fs(path)[1]
        if fs.get_file_info(sub).type != 0:
            fs.delete_dir_contents(sub, missing_dir_ok=True)
    buckets = num_partitions or _default_partitions()
    with task_based_shuffle():
        _write_features(ds, paths, buckets, as_of_ms, weights, cfg)
    return paths


def _write_features(
    ds: Any,
    paths: dict[str, str],
    buckets: int,
    as_of_ms: int,
    weights: dict[str, float],
    cfg: OfflineFeatureSettings,
) -> None:
    bucketed_groups(
        ds, "user_id", _user_group, buckets=buckets,
        fn_kwargs={"as_of_ms": as_of_ms, "weights": weights, "max_len": cfg.watch_sequence_max_len},
    ).write_parquet(paths["users"])  # fmt: skip
    bucketed_groups(
        ds, "media_id", _item_group, buckets=buckets, fn_kwargs={"as_of_ms": as_of_ms}
    ).write_parquet(paths["items"])
