"""Point-in-time correct training sets from the Parquet event store.

A **label** is either one engagement event (``granularity="event"``) or one impression
(``granularity="impression"``, the default for ranking): every event of one user on one item
within one session, labelled at the time of its first event. Each label carries

* ``weight``: the signal weight (``settings.events.signal_weights``) of the event, or the
  sum over the impression's events;
* per-head binary labels: ``completion`` (media_completed), ``strong_positive``
  (liked / shared / added to playlist / replay / subscription), ``negative`` (skipped /
  disliked / paused early);

and the user features, item features and user-item affinities **as of the label's time**:
they are computed only from events strictly before ``label_ts`` (``ts < label_ts``), by the
same functions as ``app.features.offline`` (and so ``app.features.definitions``). The label's
own event, and everything after it, never reaches its features.

Scaling: the pandas builder works on any slice that holds all events of the users (user side)
or items (item side) involved; :func:`build_training_set_ray` runs the user side in
``groupby("user_id").map_groups`` and the item side in ``groupby("media_id").map_groups``
with Ray Data, joins the halves on ``label_id`` and writes Parquet for Ray Train.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from app.features.offline import (
    _default_partitions,
    _weights,
    affinity_asof,
    bucketed_groups,
    item_features_asof,
    prepare_events,
    read_store,
    task_based_shuffle,
    user_features_asof,
)
from app.schemas import EventType

if TYPE_CHECKING:
    from app.config import FeedraySettings

Granularity = Literal["event", "impression"]

COMPLETION = {str(EventType.MEDIA_COMPLETED)}
STRONG_POSITIVE = {
    str(EventType.MEDIA_LIKED),
    str(EventType.MEDIA_SHARED),
    str(EventType.MEDIA_ADDED_TO_PLAYLIST),
    str(EventType.MEDIA_REPLAY),
    str(EventType.SUBSCRIPTION_TO_CREATOR),
}
NEGATIVE = {
    str(EventType.MEDIA_SKIPPED),
    str(EventType.MEDIA_DISLIKED),
    str(EventType.MEDIA_PAUSED_EARLY),
}

USER_FEATURES = [
    "top_categories_7d", "preferred_language", "preferred_content_type", "video_plays_7d",
    "audio_plays_7d", "recent_media_7d", "consumed_seconds_7d", "sessions_7d",
    "avg_session_duration", "subscription_count",
]  # fmt: skip
ITEM_FEATURES = [
    "play_count_24h", "views_1h", "item_starts", "item_completes", "item_likes", "item_dislikes",
    "like_ratio", "completion_rate", "publish_age_hours", "trending_score",
]  # fmt: skip
ITEM_META = ["category", "creator_id", "language", "content_type", "duration_s", "published_at"]


def make_labels(
    events: pd.DataFrame,
    signal_weights: Mapping[Any, float] | None = None,
    granularity: Granularity = "impression",
) -> pd.DataFrame:
    """Label rows: label_id, user_id, media_id, label_ts (ms) + timestamp, weight, the three
    heads, n_events, event_type (first event) and the item metadata of the events."""
    weights = _weights(signal_weights)
    ev = events if "ts_ms" in events.columns else prepare_events(events)
    ev = ev.sort_values(["ts_ms", "event_id"], kind="stable")
    frame = pd.DataFrame(
        {
            "event_id": ev["event_id"].to_numpy(object),
            "user_id": ev["user_id"].to_numpy(object),
            "media_id": ev["media_id"].to_numpy(object),
            "ts_ms": ev["ts_ms"].to_numpy(np.int64),
            "event_type": ev["event_type"].to_numpy(object),
            "weight": ev["event_type"]
            .map(weights)
            .astype("float64")
            .fillna(0.0)
            .to_numpy(np.float64),
            "completion": ev["event_type"].isin(COMPLETION).to_numpy(),
            "strong_positive": ev["event_type"].isin(STRONG_POSITIVE).to_numpy(),
            "negative": ev["event_type"].isin(NEGATIVE).to_numpy(),
        }
    )
    for col in ITEM_META:
        if col in ev.columns:
            frame[col] = (
                ev[col].to_numpy(object) if col != "duration_s" else ev[col].to_numpy(np.float64)
            )
    if granularity == "event":
        labels = frame.rename(columns={"event_id": "label_id", "ts_ms": "label_ts_ms"})
        labels["n_events"] = 1
    else:
        session = ev["session_id"].fillna(ev["event_id"]).to_numpy(object)
        frame["_key"] = (
            frame["user_id"]
            + "\x1f"
            + frame["media_id"]
            + "\x1f"
            + pd.Series(session).astype(str).to_numpy(object)
        )
        grouped = frame.groupby("_key", sort=False)
        agg: dict[str, Any] = {
            "label_id": ("event_id", "first"),
            "user_id": ("user_id", "first"),
            "media_id": ("media_id", "first"),
            "label_ts_ms": ("ts_ms", "min"),
            "event_type": ("event_type", "first"),
            "weight": ("weight", "sum"),
            "completion": ("completion", "any"),
            "strong_positive": ("strong_positive", "any"),
            "negative": ("negative", "any"),
            "n_events": ("weight", "size"),
        }
        for col in ITEM_META:
            if col in frame.columns:
                agg[col] = (col, "first")
        labels = grouped.agg(**agg).reset_index(drop=True)
    labels["label_ts"] = pd.to_datetime(labels["label_ts_ms"], unit="ms", utc=True)
    return labels.sort_values(["label_ts_ms", "label_id"], kind="stable").reset_index(drop=True)


def user_side(
    events: pd.DataFrame, labels: pd.DataFrame, signal_weights: Mapping[Any, float] | None = None
) -> pd.DataFrame:
    """User features and user-item affinities of each label, from the user's events < label_ts."""
    queries = labels[["label_id", "user_id", "label_ts_ms"]].rename(
        columns={"label_ts_ms": "as_of"}
    )
    feats = user_features_asof(events, queries)
    aff_q = pd.DataFrame(
        {
            "user_id": labels["user_id"].to_numpy(object),
            "category": labels["category"].to_numpy(object) if "category" in labels else None,
            "creator_id": labels["creator_id"].to_numpy(object) if "creator_id" in labels else None,
            "as_of": labels["label_ts_ms"].to_numpy(np.int64),
        }
    )
    feats["user_category_affinity"] = affinity_asof(events, aff_q, "category", signal_weights)
    feats["user_creator_affinity"] = affinity_asof(events, aff_q, "creator_id", signal_weights)
    return feats[["label_id", *USER_FEATURES, "user_category_affinity", "user_creator_affinity"]]


def item_side(
    events: pd.DataFrame, labels: pd.DataFrame, catalogue: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Item features of each label, from the item's events < label_ts."""
    queries = labels[["label_id", "media_id", "label_ts_ms"]].rename(
        columns={"label_ts_ms": "as_of"}
    )
    feats = item_features_asof(events, queries, catalogue)
    return feats[["label_id", *ITEM_FEATURES]]


def build_training_set(
    events: pd.DataFrame,
    signal_weights: Mapping[Any, float] | None = None,
    *,
    catalogue: pd.DataFrame | None = None,
    granularity: Granularity = "impression",
    labels_from: Any = None,
    labels_until: Any = None,
) -> pd.DataFrame:
    """One row per label with its features as of the label's time (pandas, one machine).

    ``labels_from`` / ``labels_until`` restrict which labels are emitted (features still see
    every earlier event), e.g. a training window after a warm-up period.
    """
    ev = prepare_events(events, catalogue)
    labels = make_labels(ev, signal_weights, granularity)
    if labels_from is not None:
        labels = labels[
            labels["label_ts"] >= pd.Timestamp(labels_from, tz="UTC")
            if pd.Timestamp(labels_from).tzinfo is None
            else labels["label_ts"] >= pd.Timestamp(labels_from)
        ]
    if labels_until is not None:
        labels = labels[
            labels["label_ts"] < pd.Timestamp(labels_until, tz="UTC")
            if pd.Timestamp(labels_until).tzinfo is None
            else labels["label_ts"] < pd.Timestamp(labels_until)
        ]
    labels = labels.reset_index(drop=True)
    users = user_side(ev, labels, signal_weights)
    items = item_side(ev, labels, catalogue)
    return labels.merge(users, on="label_id", how="left").merge(items, on="label_id", how="left")


# --- Ray Data ---------------------------------------------------------------------------------


def _ray_user_side(
    batch: pd.DataFrame, *, weights: dict[str, float], granularity: Granularity
) -> pd.DataFrame:
    ev = prepare_events(batch)
    labels = make_labels(ev, weights, granularity)
    return labels.merge(user_side(ev, labels, weights), on="label_id", how="left")


def _ray_item_side(
    batch: pd.DataFrame, *, weights: dict[str, float], granularity: Granularity
) -> pd.DataFrame:
    ev = prepare_events(batch)
    labels = make_labels(ev, weights, granularity)
    return item_side(ev, labels)


def build_training_set_ray(
    settings: FeedraySettings,
    root: str | None = None,
    output: str | None = None,
    *,
    until: Any = None,
    granularity: Granularity = "impression",
    num_partitions: int | None = None,
) -> str:
    """Ray Data job: the training set of every label before ``until`` as Parquet under ``output``.

    Impression labels never span two users or two items, so both sides derive identical
    labels (and ``label_id``s) from their own group of events.
    """
    from app.ray_runtime import connect_ray
    from app.storage import offline_root

    root = root or offline_root(settings)
    output = output or str(
        settings.state_dir.expanduser().resolve() / "offline" / "training_sets" / granularity
    )
    connect_ray(settings)
    ds = read_store(root, as_of=until)
    weights = _weights(settings.events.signal_weights)
    kwargs = {"weights": weights, "granularity": granularity}
    num_partitions = num_partitions or _default_partitions()
    users = bucketed_groups(ds, "user_id", _ray_user_side, buckets=num_partitions, fn_kwargs=kwargs)
    items = bucketed_groups(
        ds, "media_id", _ray_item_side, buckets=num_partitions, fn_kwargs=kwargs
    )
    # Join the halves on label_id without Ray's hash join (it needs polars): each side is
    # written hash-partitioned by label_id, then one task per bucket merges the two halves.
    import ray

    from app.storage import resolve_fs

    fs, base = resolve_fs(output)
    if fs.get_file_info(base).type != 0:
        fs.delete_dir_contents(base)
    fs.create_dir(base, recursive=True)
    buckets = num_partitions

    def tag(batch: pd.DataFrame) -> pd.DataFrame:
        hashed = pd.util.hash_array(batch["label_id"].astype(str).to_numpy(object))
        return batch.assign(_lb=(hashed % np.uint64(buckets)).astype(np.int64))

    with task_based_shuffle():
        users.map_batches(tag, batch_format="pandas").write_parquet(
            f"{output}/_users", partition_cols=["_lb"]
        )
        items.map_batches(tag, batch_format="pandas").write_parquet(
            f"{output}/_items", partition_cols=["_lb"]
        )
    merge = ray.remote(_merge_bucket_impl)
    refs = [merge.remote(output, b) for b in range(buckets)]
    ray.get(refs)
    fs.delete_dir(f"{base}/_users")
    fs.delete_dir(f"{base}/_items")
    return output


def _read_bucket(uri: str) -> pd.DataFrame | None:
    import pyarrow.dataset as pads

    from app.storage import resolve_fs

    fs, path = resolve_fs(uri)
    if fs.get_file_info(path).type == 0:
        return None
    return pads.dataset(path, filesystem=fs, format="parquet").to_table().to_pandas()


def _merge_bucket_impl(output: str, bucket: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.storage import resolve_fs

    users = _read_bucket(f"{output}/_users/_lb={bucket}")
    items = _read_bucket(f"{output}/_items/_lb={bucket}")
    if users is None:
        return 0
    if items is not None:
        users = users.merge(items, on="label_id", how="left")
    users = users.sort_values(["label_ts_ms", "label_id"], kind="stable")
    fs, base = resolve_fs(output)
    pq.write_table(
        pa.Table.from_pandas(users, preserve_index=False),
        f"{base}/part-{bucket:05d}.parquet",
        filesystem=fs,
    )
    return len(users)
