"""Offline features: the models' u_* and i_* columns as of a time, from raw events.

Pure pandas over frames of events, run inside the Ray Data training-set job
(``data.training_sets``) on one hash bucket of users at a time; feature values come from
``app.features.definitions`` through ``app.models.features`` (the code serving uses).

* :func:`decode_events` / :func:`catalogue_frame`: Arrow tables of the Parquet store as
  frames (dictionaries decoded, times as int64 ms).
* :func:`slot_table`: one row per started (user, item, session) slot with its labels.
* :func:`user_features`: u_* columns as of ``at_ms`` from the user window before it,
  ``[at_ms - user_window_days, at_ms)``. Serving computes the same columns from the online
  store with ``app.models.features.encode_online_users`` (equal at a midnight ``at_ms``:
  tests/app/models/test_online_parity.py).
* :func:`item_counters` + :func:`item_features`: i_* columns of catalogue items from their
  lifetime counters before ``at_ms``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.features import definitions as fd
from app.models.config import NEGATIVE_EVENTS, STRONG_EVENTS, FeatureSettings
from app.models.features import (
    PREFERRED_CODE,
    encode_items,
    item_dense,
    stable_hash,
    user_dense,
)
from app.schemas import EventType

DAY_MS = 86_400_000
EVENT_COLUMNS = ["event_type", "user_id", "media_id", "content_type", "timestamp", "session_id"]
COUNTERS = ("starts", "completes", "likes", "dislikes")
_COUNTER_EVENTS = {
    "starts": EventType.MEDIA_STARTED,
    "completes": EventType.MEDIA_COMPLETED,
    "likes": EventType.MEDIA_LIKED,
    "dislikes": EventType.MEDIA_DISLIKED,
}


def _plain(table: pa.Table) -> pd.DataFrame:
    cols = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col.cast(pa.timestamp("ms", tz="UTC")), pa.int64())
        cols[name] = col
    return pa.table(cols).to_pandas()


def decode_events(table: pa.Table) -> pd.DataFrame:
    """Store rows -> event_type, user_id, media_id, content_type, ts (int64 ms), session_id."""
    frame = _plain(table.select(EVENT_COLUMNS)).rename(columns={"timestamp": "ts"})
    frame["session_id"] = frame["session_id"].fillna("")
    return frame


def catalogue_frame(table: pa.Table) -> pd.DataFrame:
    """A one-row-per-item catalogue table (``app.storage.catalogue_table``) as a frame with
    ``published_ms`` (int64)."""
    return _plain(table).rename(columns={"published_at": "published_ms"})


# --- slots and labels -------------------------------------------------------------------------


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


# --- user features ----------------------------------------------------------------------------


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
    """u_* columns for ``users`` as of ``at_ms`` from their events in
    ``[at_ms - user_window_days, at_ms)`` (``events`` must hold all of those users' events)."""
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


# --- item features ----------------------------------------------------------------------------


def item_counters(events: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sums of the item counters (``COUNTERS``) and of all events (``n``) per ``by`` keys."""
    et = events["event_type"].astype(str).to_numpy()
    frame = events[by].copy()
    frame["n"] = 1.0
    for name, event in _COUNTER_EVENTS.items():
        frame[name] = (et == str(event)).astype(np.float64)
    return frame.groupby(by, sort=False).sum().reset_index()


def item_features(
    counters: pd.DataFrame, catalogue: pd.DataFrame, at_ms: int, cfg: FeatureSettings
) -> pd.DataFrame:
    """i_* columns, ``starts`` and ``published_ms`` of every catalogue item as of ``at_ms``,
    from ``counters`` (one row per media_id with ``COUNTERS``: its events before ``at_ms``)."""
    counts = counters.set_index("media_id")[list(COUNTERS)].reindex(
        catalogue["media_id"], fill_value=0.0
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
