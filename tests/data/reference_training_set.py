"""The pandas reference of the training-set builder: the whole store in one frame, in the driver.

Only the tests use it, to prove the Ray Data job (``data.training_sets``) builds the same
rows with the same feature values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from app.features import definitions as fd
from app.models.config import NEGATIVE_EVENTS, STRONG_EVENTS, FeatureSettings
from app.models.features import (
    PREFERRED_CODE,
    encode_items,
    item_dense,
    stable_hash,
    type_match,
    user_dense,
)
from app.schemas import EventType
from data.training_sets import TrainingSet

DAY_MS = 86_400_000
EVENT_COLUMNS = ["event_type", "user_id", "media_id", "content_type", "timestamp", "session_id"]


def _decode(table: pa.Table) -> pd.DataFrame:
    cols = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col.cast(pa.timestamp("ms", tz="UTC")), pa.int64())
        cols[name] = col
    return pa.table(cols).to_pandas()


def load_events(path: str | Path) -> pd.DataFrame:
    """Events of the offline store as a frame: event_type, user_id, media_id, content_type,
    ts (int64 ms), session_id (sorted by time)."""
    dataset = pads.dataset(str(path), format="parquet", partitioning="hive")
    frame = _decode(dataset.to_table(columns=EVENT_COLUMNS))
    frame = frame.rename(columns={"timestamp": "ts"})
    frame["session_id"] = frame["session_id"].fillna("")
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def load_catalogue(path: str | Path) -> pd.DataFrame:
    """The catalogue (one row per media_id, last record wins), ``published_ms`` int64."""
    dataset = pads.dataset(str(path), format="parquet")
    names = [
        "media_id",
        "creator_id",
        "category",
        "language",
        "content_type",
        "duration_s",
        "published_at",
    ]
    frame = _decode(dataset.to_table(columns=[n for n in names if n in dataset.schema.names]))
    frame = frame.rename(columns={"published_at": "published_ms"})
    return frame.drop_duplicates("media_id", keep="last").reset_index(drop=True)


def slot_table(events: pd.DataFrame, signal_weights: dict) -> pd.DataFrame:
    """One row per (user, item, session) slot: ts (first event), labels and value."""
    weights = {str(k): float(v) for k, v in signal_weights.items()}
    et = events["event_type"].astype(str)
    frame = pd.DataFrame(
        {
            "user_id": events["user_id"],
            "media_id": events["media_id"],
            "session_id": events["session_id"],
            "ts": events["ts"],
            "started": (et == str(EventType.MEDIA_STARTED)).to_numpy(),
            "label_completed": (et == str(EventType.MEDIA_COMPLETED)).to_numpy(np.float32),
            "label_strong": et.isin([str(e) for e in STRONG_EVENTS]).to_numpy(np.float32),
            "label_negative": et.isin([str(e) for e in NEGATIVE_EVENTS]).to_numpy(np.float32),
            "value": et.map(weights).fillna(0.0).to_numpy(np.float32),
        }
    )
    slots = frame.groupby(["user_id", "media_id", "session_id"], sort=False, observed=True).agg(
        ts=("ts", "min"),
        started=("started", "max"),
        label_completed=("label_completed", "max"),
        label_strong=("label_strong", "max"),
        label_negative=("label_negative", "max"),
        value=("value", "sum"),
    )
    slots = slots[slots["started"]].drop(columns="started").reset_index()
    return slots.sort_values("ts", kind="stable").reset_index(drop=True)


# --- point-in-time features ------------------------------------------------------------------


def _top_n_matrix(
    keys: pd.Series, values: np.ndarray, order: np.ndarray, index: pd.Index, n: int
) -> np.ndarray:
    """[len(index), n] int64 matrix of the first n ``values`` per key in ``order``; 0-padded."""
    out = np.zeros((len(index), n), dtype=np.int64)
    if len(keys) == 0:
        return out
    k = keys.to_numpy()[order]
    v = values[order]
    rank = pd.Series(k).groupby(k, sort=False).cumcount().to_numpy()
    keep = rank < n
    rows = index.get_indexer(k[keep])
    ok = rows >= 0
    out[rows[ok], rank[keep][ok]] = v[keep][ok]
    return out


def user_features(
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    users: np.ndarray,
    at_ms: int,
    cfg: FeatureSettings,
) -> dict[str, np.ndarray]:
    """u_* columns for ``users`` as of ``at_ms`` from events in the user window before it,
    ``[at_ms - user_window_days, at_ms)``. Serving computes the same columns from the online
    store with ``app.models.features.encode_online_users`` (equal at a midnight ``at_ms``:
    tests/app/models/test_online_parity.py)."""
    lo = at_ms - int(cfg.user_window_days * DAY_MS)
    window = events[(events["ts"] >= lo) & (events["ts"] < at_ms)]
    index = pd.Index(users)
    et = window["event_type"].astype(str)
    counts = (
        pd.DataFrame(
            {
                "user_id": window["user_id"].to_numpy(),
                "plays": (et == str(EventType.MEDIA_STARTED)).to_numpy(np.float64),
                "video": (
                    (et == str(EventType.MEDIA_STARTED))
                    & (window["content_type"].astype(str) == "VIDEO")
                ).to_numpy(np.float64),
                "completes": (et == str(EventType.MEDIA_COMPLETED)).to_numpy(np.float64),
                "likes": (et == str(EventType.MEDIA_LIKED)).to_numpy(np.float64),
                "dislikes": (et == str(EventType.MEDIA_DISLIKED)).to_numpy(np.float64),
            }
        )
        .groupby("user_id")
        .sum()
        .reindex(index, fill_value=0.0)
    )
    dense = user_dense(
        counts["plays"], counts["completes"], counts["likes"], counts["dislikes"], counts["video"]
    )
    pref = fd.preferred_content_type(counts["video"], counts["plays"] - counts["video"])
    pref_code = pd.Series(pref).map(PREFERRED_CODE).to_numpy(np.int64).copy()
    pref_code[counts["plays"].to_numpy() == 0] = 0

    plays = window[et == str(EventType.MEDIA_STARTED)][["user_id", "media_id", "ts"]]
    meta = catalogue.set_index("media_id")
    plays = plays.assign(
        category=meta["category"].reindex(plays["media_id"]).to_numpy(),
        language=meta["language"].reindex(plays["media_id"]).to_numpy(),
    )
    out: dict[str, np.ndarray] = {
        "u_hash": stable_hash(pd.Series(users), cfg.user_buckets, "user:")
    }
    for col, name, n, buckets, salt in (
        ("category", "u_cats", cfg.top_categories, cfg.category_buckets, "cat:"),
        ("language", "u_lang", 1, cfg.language_buckets, "lang:"),
    ):
        c = plays.groupby(["user_id", col]).size().rename("n").reset_index()
        # most plays first, ties by key (stable, like definitions.top_k_keys)
        order = np.lexsort(
            (c[col].to_numpy().astype(str), -c["n"].to_numpy(), c["user_id"].to_numpy())
        )
        hashed = stable_hash(c[col], buckets, salt)
        m = _top_n_matrix(c["user_id"], hashed, order, index, n)
        out[name] = m[:, 0] if n == 1 else m
    # recent positively engaged items (completed or a strong event: definitions.POSITIVE_EVENTS,
    # the set the online store's :pos zset keeps), newest first, distinct; equal times are
    # ordered by media id, largest first, as Redis orders equal scores (serving parity)
    positive_types = [str(e) for e in fd.POSITIVE_EVENTS]
    pos = window[et.isin(positive_types)][["user_id", "media_id", "ts"]]
    pos = pos.sort_values(["ts", "media_id"], ascending=False, kind="stable").drop_duplicates(
        ["user_id", "media_id"]
    )
    out["u_hist"] = _top_n_matrix(
        pos["user_id"],
        stable_hash(pos["media_id"], cfg.item_buckets, "item:"),
        np.arange(len(pos)),
        index,
        cfg.history_len,
    )
    out["u_pref"] = pref_code
    out["u_dense"] = dense
    return out


def item_features(
    events: pd.DataFrame, catalogue: pd.DataFrame, at_ms: int, cfg: FeatureSettings
) -> pd.DataFrame:
    """i_* columns of every catalogue item as of ``at_ms`` (counters over all events before it)."""
    before = events[events["ts"] < at_ms]
    et = before["event_type"].astype(str)
    counts = (
        pd.DataFrame(
            {
                "media_id": before["media_id"].to_numpy(),
                "starts": (et == str(EventType.MEDIA_STARTED)).to_numpy(np.float64),
                "completes": (et == str(EventType.MEDIA_COMPLETED)).to_numpy(np.float64),
                "likes": (et == str(EventType.MEDIA_LIKED)).to_numpy(np.float64),
                "dislikes": (et == str(EventType.MEDIA_DISLIKED)).to_numpy(np.float64),
            }
        )
        .groupby("media_id")
        .sum()
        .reindex(catalogue["media_id"], fill_value=0.0)
    )
    age = fd.publish_age_hours(
        catalogue["published_ms"].to_numpy(np.float64) / 1000.0, at_ms / 1000.0
    )
    frame = pd.DataFrame({"media_id": catalogue["media_id"].to_numpy()})
    for name, values in encode_items(catalogue, cfg).items():
        frame[name] = values
    frame["i_dense"] = list(
        item_dense(
            counts["starts"],
            counts["completes"],
            counts["likes"],
            counts["dislikes"],
            age,
            catalogue["duration_s"].to_numpy(np.float64),
        )
    )
    frame["starts"] = counts["starts"].to_numpy()
    frame["published_ms"] = catalogue["published_ms"].to_numpy(np.int64)
    return frame


def _examples(
    slots: pd.DataFrame,
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    at_ms: int,
    cfg: FeatureSettings,
    day: int,
) -> pd.DataFrame:
    users = slots["user_id"].unique()
    uf = user_features(events, catalogue, users, at_ms, cfg)
    items = item_features(events, catalogue, at_ms, cfg).set_index("media_id")
    rows = pd.Index(users).get_indexer(slots["user_id"])
    out = slots[
        ["user_id", "media_id", "ts", "label_completed", "label_strong", "label_negative", "value"]
    ].copy()
    out = out.rename(columns={"ts": "ts_ms"})
    out["day"] = day
    for name, values in uf.items():
        out[name] = list(values[rows]) if values.ndim == 2 else values[rows]
    it = items.reindex(out["media_id"])
    for name in ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur"):
        out[name] = it[name].fillna(0).to_numpy(np.int64)
    missing = it["i_dense"].isna().to_numpy()
    out["i_dense"] = [
        np.zeros(5, np.float32) if m else v
        for m, v in zip(missing, it["i_dense"].to_numpy(), strict=True)
    ]
    out["type_match"] = type_match(out["u_pref"].to_numpy(), out["i_type"].to_numpy())
    return out


def build_training_set(
    events_path: str | Path,
    catalogue_path: str | Path,
    cfg: FeatureSettings | None = None,
    *,
    signal_weights: dict | None = None,
    eval_days: float = 1.0,
    history_days: int = 1,
    exclude_items: set[str] | None = None,
) -> TrainingSet:
    """Point-in-time training set from the offline store (see the module docstring).

    ``history_days``: the first days only feed features (no examples). ``exclude_items``:
    media ids whose events are dropped everywhere (a cold-start hold-out).
    """
    from app.config import DEFAULT_SIGNAL_WEIGHTS

    cfg = cfg or FeatureSettings()
    events = load_events(events_path)
    catalogue = load_catalogue(catalogue_path)
    if exclude_items:
        events = events[~events["media_id"].isin(exclude_items)].reset_index(drop=True)
    slots = slot_table(events, signal_weights or DEFAULT_SIGNAL_WEIGHTS)
    first_day = int(events["ts"].min() // DAY_MS)
    per_day = np.bincount((events["ts"].to_numpy() // DAY_MS - first_day).astype(np.int64))
    # a trailing sliver (sessions running past the last midnight) is not a day of its own
    last_day = first_day + int(np.flatnonzero(per_day >= 0.2 * per_day.max()).max())
    end_ms = (last_day + 1) * DAY_MS
    # The held-out days end with the data, which may stop part-way through its last day
    # (a world simulated up to now): counted from that day's midnight they could be empty.
    data_end_ms = min(end_ms, int(events["ts"].max()) + 1)
    eval_from = data_end_ms - int(eval_days * DAY_MS)
    parts = []
    for day in range(first_day + history_days, last_day + 1):
        at = day * DAY_MS
        upper = at + DAY_MS if day < last_day else np.iinfo(np.int64).max
        chunk = slots[(slots["ts"] >= at) & (slots["ts"] < upper)]
        if len(chunk):
            parts.append(_examples(chunk, events, catalogue, at, cfg, day - first_day))
    examples = pd.concat(parts, ignore_index=True)
    examples["positive"] = examples["value"] >= cfg.positive_threshold
    train = examples[examples["ts_ms"] < eval_from].reset_index(drop=True)
    evaluation = examples[examples["ts_ms"] >= eval_from].reset_index(drop=True)

    # logQ: each item's share of training positives (its in-batch sampling probability)
    pos = train[train["positive"]]
    pos_counts = pos["i_hash"].value_counts()
    total = max(int(pos_counts.sum()), 1)
    for frame in (train, evaluation):
        q = frame["i_hash"].map(pos_counts).fillna(0.5).to_numpy(np.float64) / total
        frame["log_q"] = np.log(q).astype(np.float32)
        frame["weight"] = np.ones(len(frame), np.float32)

    items = item_features(events, catalogue, end_ms, cfg)
    train_items = train.groupby("media_id").agg(
        train_starts=("media_id", "size"), train_positives=("positive", "sum")
    )
    items["train_starts"] = (
        items["media_id"].map(train_items["train_starts"]).fillna(0).to_numpy(np.int64)
    )
    items["train_positives"] = (
        items["media_id"].map(train_items["train_positives"]).fillna(0).to_numpy(np.int64)
    )
    all_users = np.sort(events["user_id"].unique())
    uf = user_features(events, catalogue, all_users, end_ms, cfg)
    users = pd.DataFrame({"user_id": all_users})
    for name, values in uf.items():
        users[name] = list(values) if values.ndim == 2 else values
    meta = {
        "events_path": str(events_path),
        "catalogue_path": str(catalogue_path),
        "first_day_ms": first_day * DAY_MS,
        "eval_from_ms": eval_from,
        "end_ms": end_ms,
        "train_rows": len(train),
        "eval_rows": len(evaluation),
        "train_positives": int(train["positive"].sum()),
        "eval_positives": int(evaluation["positive"].sum()),
        "items": len(items),
        "users": len(users),
        "excluded_items": len(exclude_items or ()),
        "features": cfg.model_dump(mode="json"),
    }
    return TrainingSet(train, evaluation, items, users, meta)
