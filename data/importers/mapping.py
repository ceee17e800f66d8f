"""A ``Dataset`` -> feedray wire messages: ``media.published`` records and engagement events.

The mapping (every message validates against ``app.schemas``):

- ids: ``user_id`` = namespace + the dataset's user id, ``media_id`` = namespace + item id
  (the namespace keeps two datasets, or a dataset and the simulator, apart). An id that
  does not fit the wire ``Identifier`` pattern is an error.
- each interaction -> one ``media_completed`` event (consumed_fraction 1.0, signal weight
  1.0: a positive for training, as the full-ranking protocol treats every interaction);
  the strength adds a second event at the same time:

  ============  =====================================  ==============================
  strength      condition                              extra event
  ============  =====================================  ==============================
  ``rating``    rating >= ``like_at`` (default 4)      ``media_liked`` (strong)
  ``count``     play count >= ``replay_at`` (def. 2)   ``media_replay`` (strong)
  ``implicit``  --                                     none
  ============  =====================================  ==============================

- time: the dataset's timestamp (seconds) when it has one. Without one, interaction
  ``row`` (file order: train, then valid, then test files) gets
  ``base + row`` seconds, so a time-ordered split of the store keeps a pre-split
  dataset's train < valid < test order and file order within each.
- catalogue: one ``media.published`` per item: ``creator_id`` = namespace + the item's
  creator (``"unknown"`` when the dataset has none), ``category`` = its category (else
  ``"unknown"``), ``content_type`` from the dataset (``AUDIO`` for Last.fm, ``VIDEO``
  otherwise), ``language`` = ``"und"`` (undetermined), ``duration_s`` = ``duration_s``
  (the wire needs one; datasets carry none), ``published_at`` = one day before the
  dataset's first event, ``title`` from the dataset (cut to 512 characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from data.importers.readers import Dataset, DatasetError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
DAY_S = 86_400.0


@dataclass(frozen=True)
class Mapping:
    """Knobs of the mapping (see the module docstring)."""

    namespace: str = ""
    like_at: float = 4.0
    replay_at: float = 2.0
    base_time_s: float = 1_577_836_800.0  # 2020-01-01T00:00:00Z, for data without time
    duration_s: float = 600.0


def _iso(seconds: np.ndarray) -> list[str]:
    ms = np.round(np.asarray(seconds, np.float64) * 1000).astype("int64").astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(ms, unit="ms").tolist()]


def _ids(values: pd.Series, namespace: str, what: str) -> np.ndarray:
    out = (namespace + values.astype(str)).to_numpy(dtype=object)
    bad = [v for v in pd.unique(out) if not ID_PATTERN.match(v)]
    if bad:
        raise DatasetError(f"{len(bad)} {what} ids do not fit [A-Za-z0-9_.:-]{{1,64}}: {bad[:3]}")
    return out


def event_times(dataset: Dataset, m: Mapping) -> np.ndarray:
    """Seconds since epoch per interaction (synthetic from ``row`` when missing)."""
    ts = dataset.interactions["timestamp"].to_numpy(np.float64)
    if np.isnan(ts).all():
        return m.base_time_s + dataset.interactions["row"].to_numpy(np.float64)
    if np.isnan(ts).any():
        raise DatasetError("some interactions have a timestamp and some do not")
    return ts


def extra_events(dataset: Dataset, m: Mapping) -> tuple[np.ndarray, str | None]:
    """Mask of interactions that get a second event, and its type."""
    s = dataset.interactions["strength"].to_numpy(np.float64)
    if dataset.strength_kind == "rating":
        return s >= m.like_at, "media_liked"
    if dataset.strength_kind == "count":
        return s >= m.replay_at, "media_replay"
    return np.zeros(len(s), dtype=bool), None


def publications(dataset: Dataset, m: Mapping = Mapping()) -> list[dict]:
    """``MediaPublished`` dicts, one per item."""
    items = dataset.items
    first = float(event_times(dataset, m).min()) if len(dataset.interactions) else m.base_time_s
    published = _iso(np.array([first - DAY_S]))[0]
    media = _ids(items["item_id"], m.namespace, "item")
    creators = (
        items["creator"].fillna("unknown")
        if "creator" in items
        else pd.Series("unknown", items.index)
    )
    creator_ids = _ids(creators, m.namespace, "creator")
    categories = (
        items["category"].fillna("unknown").astype(str).str.slice(0, 64)
        if "category" in items
        else pd.Series("unknown", items.index)
    )
    titles = items["title"] if "title" in items else pd.Series(None, items.index, dtype=object)
    out = []
    for mid, cid, cat, title in zip(media, creator_ids, categories, titles, strict=True):
        record = {
            "media_id": mid,
            "creator_id": cid,
            "content_type": dataset.content_type,
            "category": cat or "unknown",
            "language": "und",
            "duration_s": m.duration_s,
            "published_at": published,
        }
        if isinstance(title, str) and title:
            record["title"] = title[:512]
        out.append(record)
    return out


def events(dataset: Dataset, m: Mapping = Mapping()) -> list[dict]:
    """Engagement event dicts in interaction order (an extra event right after its row)."""
    inter = dataset.interactions
    users = _ids(inter["user_id"], m.namespace, "user")
    media = _ids(inter["item_id"], m.namespace, "item")
    times = _iso(event_times(dataset, m))
    extra, extra_type = extra_events(dataset, m)
    prefix = m.namespace + re.sub(r"[^A-Za-z0-9_.:\-]", "_", dataset.name)[:40] + "-"
    out = []
    for row, (u, i, t, x) in enumerate(zip(users, media, times, extra, strict=True)):
        base = {"user_id": u, "media_id": i, "content_type": dataset.content_type, "timestamp": t}
        out.append(
            base
            | {
                "event_id": f"{prefix}{row}",
                "event_type": "media_completed",
                "consumed_fraction": 1.0,
            }
        )
        if x:
            out.append(base | {"event_id": f"{prefix}{row}x", "event_type": extra_type})
    return out


def messages(records: list[dict], key: str) -> tuple[list[str], list[str]]:
    """(keys, JSON values) of records, keyed by ``record[key]``."""
    return [r[key] for r in records], [orjson.dumps(r).decode() for r in records]
