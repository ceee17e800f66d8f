"""Shared encoders: stable hashing of ids into buckets and the model input columns.

Both models read the same encoded columns, produced by ``encode_users`` / ``encode_items``
from raw feature frames (training: ``train.data``; serving: the online features). All
categorical inputs are hashed (index 0 = missing), so no vocabulary has to be shipped
with a model and unseen values (a new creator, a new language) never break serving.

Columns (B = rows; H = history_len; C = top_categories):
    users: u_hash [B] int64, u_hist [B, H] int64, u_cats [B, C] int64, u_lang [B] int64,
           u_pref [B] int64 (0 missing, 1 VIDEO, 2 AUDIO, 3 MIXED), u_dense [B, USER_DENSE] f32
    items: i_hash [B], i_cat [B], i_creator [B], i_type [B] (0 missing, 1 VIDEO, 2 AUDIO),
           i_lang [B], i_dur [B] (duration bucket), i_dense [B, ITEM_DENSE] f32
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from app.features import definitions as fd
from app.models.config import FeatureSettings

USER_DENSE_NAMES = ("log_plays_7d", "completion_rate_7d", "like_ratio_7d", "video_share_7d")
ITEM_DENSE_NAMES = ("log_starts", "completion_rate", "like_ratio", "log_age_hours", "log_duration")
USER_DENSE = len(USER_DENSE_NAMES)
ITEM_DENSE = len(ITEM_DENSE_NAMES)
CONTENT_TYPE_CODE = {"VIDEO": 1, "AUDIO": 2}
PREFERRED_CODE = {"VIDEO": 1, "AUDIO": 2, "MIXED": 3}
DURATION_EDGES_S = np.array([30, 60, 120, 240, 420, 600, 900, 1800, 2700, 3600, 7200], dtype=np.float64)
DURATION_BUCKETS = len(DURATION_EDGES_S) + 2  # 0 = missing

USER_COLUMNS = ("u_hash", "u_hist", "u_cats", "u_lang", "u_pref", "u_dense")
ITEM_COLUMNS = ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur", "i_dense")
_FLOAT_COLUMNS = {"u_dense", "i_dense", "log_q", "weight", "retrieval_score", "type_match",
                  "label_completed", "label_strong", "label_negative", "value"}


def stable_hash(values: np.ndarray | pd.Series | list, buckets: int, salt: str = "") -> np.ndarray:
    """Deterministic bucket in ``[1, buckets)`` per string (0 for None/NaN/""): int64 [n].

    Uses pandas' SipHash with its fixed key, so the same id gets the same bucket in every
    process, on every host, in training and serving (unlike Python's salted ``hash``).
    """
    series = pd.Series(values, dtype=object)
    missing = series.isna().to_numpy() | (series.astype(str).to_numpy() == "")
    text = (salt + series.astype(str)).to_numpy(dtype=object)
    h = pd.util.hash_array(text, categorize=True).astype(np.uint64)
    out = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
    out[missing] = 0
    return out


def duration_bucket(duration_s: np.ndarray) -> np.ndarray:
    """Log-ish duration bucket in ``[1, DURATION_BUCKETS)``; 0 when unknown: int64 [n]."""
    d = np.asarray(duration_s, dtype=np.float64)
    out = np.searchsorted(DURATION_EDGES_S, np.nan_to_num(d, nan=0.0)) + 1
    return np.where(np.isfinite(d) & (d > 0), out, 0).astype(np.int64)


def item_dense(
    starts: np.ndarray, completes: np.ndarray, likes: np.ndarray, dislikes: np.ndarray,
    age_hours: np.ndarray, duration_s: np.ndarray,
) -> np.ndarray:
    """Content dense features (float32 [n, ITEM_DENSE]) from raw counters, via definitions.py."""
    return np.stack(
        [
            np.log1p(np.asarray(starts, np.float64)) / 5.0,
            fd.completion_rate(completes, starts),
            fd.like_ratio(likes, dislikes),
            np.log1p(np.asarray(age_hours, np.float64)) / 5.0,
            np.log1p(np.nan_to_num(np.asarray(duration_s, np.float64), nan=0.0)) / 5.0,
        ],
        axis=1,
    ).astype(np.float32)


def user_dense(
    plays: np.ndarray, completes: np.ndarray, likes: np.ndarray, dislikes: np.ndarray,
    video_plays: np.ndarray,
) -> np.ndarray:
    """User dense features (float32 [n, USER_DENSE]) from 7-day raw counters."""
    plays = np.asarray(plays, np.float64)
    video_share = np.divide(np.asarray(video_plays, np.float64), plays,
                            out=np.full_like(plays, 0.5), where=plays > 0)
    return np.stack(
        [np.log1p(plays) / 5.0, fd.completion_rate(completes, plays),
         fd.like_ratio(likes, dislikes), video_share],
        axis=1,
    ).astype(np.float32)


def encode_items(frame: pd.DataFrame, cfg: FeatureSettings) -> dict[str, np.ndarray]:
    """Model columns of items from a frame with ``media_id, category, creator_id,
    content_type, language, duration_s`` and the ``i_dense`` block (already computed)."""
    return {
        "i_hash": stable_hash(frame["media_id"], cfg.item_buckets, "item:"),
        "i_cat": stable_hash(frame["category"], cfg.category_buckets, "cat:"),
        "i_creator": stable_hash(frame["creator_id"], cfg.creator_buckets, "creator:"),
        "i_type": frame["content_type"].astype(str).map(CONTENT_TYPE_CODE).fillna(0).to_numpy(np.int64),
        "i_lang": stable_hash(frame["language"], cfg.language_buckets, "lang:"),
        "i_dur": duration_bucket(frame["duration_s"].to_numpy(np.float64)),
    }


def type_match(u_pref: np.ndarray, i_type: np.ndarray) -> np.ndarray:
    """1.0 where the item's type fits the user's preferred type (MIXED or unknown fit both)."""
    u_pref = np.asarray(u_pref)
    i_type = np.asarray(i_type)
    fits = (u_pref == PREFERRED_CODE["MIXED"]) | (u_pref == 0) | (u_pref == i_type)
    return fits.astype(np.float32)


def to_tensors(batch: Mapping[str, object], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Numpy / list / tensor columns -> tensors (int64 ids, float32 dense and labels)."""
    out: dict[str, torch.Tensor] = {}
    for name, value in batch.items():
        if name in ("user_id", "media_id", "session_id"):
            continue
        if isinstance(value, torch.Tensor):
            t = value
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                arr = np.stack([np.asarray(v) for v in arr])
            arr = np.ascontiguousarray(arr)
            t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        t = t.to(torch.float32) if name in _FLOAT_COLUMNS else t.to(torch.int64) if not t.is_floating_point() else t
        out[name] = t.to(device)
    return out


def frame_columns(frame: pd.DataFrame, names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
    """Tensors of the named columns of a frame (array-valued cells stacked to [n, w])."""
    out = {}
    for name in names:
        values = frame[name]
        if values.dtype == object and len(values) and isinstance(values.iloc[0], np.ndarray):
            arr = np.stack(values.to_numpy())
        else:
            arr = values.to_numpy()
        out[name] = arr
    return to_tensors(out)
