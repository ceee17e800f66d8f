"""Shared encoders: stable hashing of ids into buckets and the model input columns.

Both models read the same encoded columns, produced with the helpers here: training builds
the user columns in ``app.features.offline.user_features`` (from events), serving with
``encode_online_users`` (from the online store's ``UserFeatures``: the same values, see
tests/app/models/test_online_parity.py); items go through ``encode_items``. All
categorical inputs are hashed (index 0 = missing), so no vocabulary has to be shipped
with a model and unseen values (a new creator, a new language) never break serving.

Columns (B = rows; H = history_len; C = top_categories):
    users: u_hash [B] int64, u_hist [B, H] int64, u_cats [B, C] int64, u_lang [B] int64,
           u_pref [B] int64 (0 missing, 1 VIDEO, 2 AUDIO, 3 MIXED), u_dense [B, USER_DENSE] f32
    items: i_hash [B], i_cat [B], i_creator [B], i_type [B] (0 missing, 1 VIDEO, 2 AUDIO),
           i_lang [B], i_dur [B] (duration bucket), i_dense [B, ITEM_DENSE] f32
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from app.features import definitions as fd
from app.models.config import FeatureSettings

if TYPE_CHECKING:
    from app.features.records import UserFeatures

USER_DENSE_NAMES = ("log_plays_7d", "completion_rate_7d", "like_ratio_7d", "video_share_7d")
ITEM_DENSE_NAMES = ("log_starts", "completion_rate", "like_ratio", "log_age_hours", "log_duration")
USER_DENSE = len(USER_DENSE_NAMES)
ITEM_DENSE = len(ITEM_DENSE_NAMES)
CONTENT_TYPE_CODE = {"VIDEO": 1, "AUDIO": 2}
PREFERRED_CODE = {"VIDEO": 1, "AUDIO": 2, "MIXED": 3}
DURATION_EDGES_S = np.array(
    [30, 60, 120, 240, 420, 600, 900, 1800, 2700, 3600, 7200], dtype=np.float64
)
DURATION_BUCKETS = len(DURATION_EDGES_S) + 2  # 0 = missing

USER_COLUMNS = ("u_hash", "u_hist", "u_cats", "u_lang", "u_pref", "u_dense")
ITEM_COLUMNS = ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur", "i_dense")
_FLOAT_COLUMNS = {
    "u_dense",
    "i_dense",
    "i_vec",
    "log_q",
    "weight",
    "retrieval_score",
    "type_match",
    "label_completed",
    "label_strong",
    "label_negative",
    "value",
}


def stable_hash(values: np.ndarray | pd.Series | list, buckets: int, salt: str = "") -> np.ndarray:
    """Deterministic bucket in ``[1, buckets)`` per string (0 for None/NaN/""): int64 [n].

    Uses pandas' SipHash with its fixed key, so the same id gets the same bucket in every
    process, on every host, in training and serving (unlike Python's salted ``hash``).
    Plain object arrays instead of a Series: the serving path hashes a few hundred strings
    per request, where Series construction used to cost more than the hashing.
    """
    arr = (
        values.to_numpy(dtype=object)
        if isinstance(values, pd.Series)
        else np.asarray(values, dtype=object).reshape(-1)
    )
    missing = np.asarray(pd.isna(arr), dtype=bool).reshape(-1)
    text = np.empty(len(arr), dtype=object)
    text[:] = [salt + (v if isinstance(v, str) else str(v)) for v in arr]
    missing |= text == salt  # str(value) == ""
    # categorize only pays off on large arrays with repeats; the hash is the same either way
    h = pd.util.hash_array(text, categorize=len(text) > 10_000).astype(np.uint64)
    out = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
    out[missing] = 0
    return out


def duration_bucket(duration_s: np.ndarray) -> np.ndarray:
    """Log-ish duration bucket in ``[1, DURATION_BUCKETS)``; 0 when unknown: int64 [n]."""
    d = np.asarray(duration_s, dtype=np.float64)
    out = np.searchsorted(DURATION_EDGES_S, np.nan_to_num(d, nan=0.0)) + 1
    return np.where(np.isfinite(d) & (d > 0), out, 0).astype(np.int64)


def item_dense(
    starts: np.ndarray,
    completes: np.ndarray,
    likes: np.ndarray,
    dislikes: np.ndarray,
    age_hours: np.ndarray,
    duration_s: np.ndarray,
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
    plays: np.ndarray,
    completes: np.ndarray,
    likes: np.ndarray,
    dislikes: np.ndarray,
    video_plays: np.ndarray,
) -> np.ndarray:
    """User dense features (float32 [n, USER_DENSE]) from 7-day raw counters."""
    plays = np.asarray(plays, np.float64)
    video_share = np.divide(
        np.asarray(video_plays, np.float64), plays, out=np.full_like(plays, 0.5), where=plays > 0
    )
    return np.stack(
        [
            np.log1p(plays) / 5.0,
            fd.completion_rate(completes, plays),
            fd.like_ratio(likes, dislikes),
            video_share,
        ],
        axis=1,
    ).astype(np.float32)


def _hashed_lists(
    lists: Sequence[Sequence[str]], width: int, buckets: int, salt: str
) -> np.ndarray:
    """[len(lists), width] int64: the first ``width`` strings of each list hashed, 0-padded."""
    out = np.zeros((len(lists), width), dtype=np.int64)
    cut = [list(values)[:width] for values in lists]
    flat = [v for values in cut for v in values]
    if flat:
        rows = np.repeat(np.arange(len(cut)), [len(values) for values in cut])
        cols = np.concatenate([np.arange(len(values)) for values in cut])
        out[rows, cols] = stable_hash(flat, buckets, salt)
    return out


def encode_online_users(
    users: Sequence[UserFeatures], cfg: FeatureSettings
) -> dict[str, np.ndarray]:
    """The u_* model columns of online-store users (``OnlineStore.read_user``), B = len(users).

    The same helpers and salts as ``app.features.offline.user_features``, so a user read at a
    midnight ``T`` gets exactly the columns training computed for ``T`` (tests/app/models/
    test_online_parity.py): u_hash ``stable_hash(user_id, "user:")``; u_hist the first
    ``history_len`` of ``recent_positive_7d`` hashed with ``"item:"``; u_cats the first
    ``top_categories`` of ``top_categories_7d`` (``"cat:"``); u_lang ``preferred_language``
    (``"lang:"``); u_pref ``PREFERRED_CODE`` of ``preferred_content_type(video, audio plays)``,
    0 without plays; u_dense ``user_dense(plays, completes, likes, dislikes, video plays)``.
    A user without activity (cold start) gets what training gives one: its u_hash, zeros,
    and the dense values of zero counts; a ``preferred_language`` set on it (e.g. from the
    request) is hashed like any other. Missing strings hash to 0.

    Shapes: u_hash, u_lang, u_pref [B] int64; u_hist [B, history_len], u_cats
    [B, top_categories] int64; u_dense [B, USER_DENSE] float32.
    Raises ValueError for settings the online store cannot serve (a user window other than
    its 7 days, more categories or history than it keeps).
    """
    if cfg.user_window_days * fd.DAY_S != fd.WINDOW_7D_S:
        raise ValueError(
            f"the online store keeps {fd.WINDOW_7D_S // fd.DAY_S}-day user windows, "
            f"the model was trained with user_window_days={cfg.user_window_days}"
        )
    if cfg.top_categories > fd.TOP_CATEGORIES_K or cfg.history_len > fd.RECENT_MEDIA_LIMIT:
        raise ValueError(
            f"the online store keeps {fd.TOP_CATEGORIES_K} top categories and "
            f"{fd.RECENT_MEDIA_LIMIT} recent items per user"
        )
    n = len(users)
    plays = np.array([u.plays_7d for u in users], dtype=np.float64)
    video = np.array([u.video_plays_7d for u in users], dtype=np.float64)
    completes = np.array([u.completes_7d for u in users], dtype=np.float64)
    likes = np.array([u.likes_7d for u in users], dtype=np.float64)
    dislikes = np.array([u.dislikes_7d for u in users], dtype=np.float64)
    pref = fd.preferred_content_type(video, plays - video)
    pref_code = np.array([PREFERRED_CODE[str(p)] for p in pref.tolist()], dtype=np.int64).reshape(n)
    pref_code[plays == 0] = 0
    return {
        "u_hash": stable_hash([u.user_id for u in users], cfg.user_buckets, "user:").reshape(n),
        "u_hist": _hashed_lists(
            [u.recent_positive_7d for u in users], cfg.history_len, cfg.item_buckets, "item:"
        ),
        "u_cats": _hashed_lists(
            [u.top_categories_7d for u in users], cfg.top_categories, cfg.category_buckets, "cat:"
        ),
        "u_lang": stable_hash(
            [u.preferred_language for u in users], cfg.language_buckets, "lang:"
        ).reshape(n),
        "u_pref": pref_code,
        "u_dense": user_dense(plays, completes, likes, dislikes, video).reshape(n, USER_DENSE),
    }


def encode_items(frame: Mapping[str, object], cfg: FeatureSettings) -> dict[str, np.ndarray]:
    """Model columns of items from a frame (or a mapping of equal-length arrays) with
    ``media_id, category, creator_id, content_type, language, duration_s``."""
    types = np.asarray(frame["content_type"], dtype=object).reshape(-1)
    return {
        "i_hash": stable_hash(frame["media_id"], cfg.item_buckets, "item:"),
        "i_cat": stable_hash(frame["category"], cfg.category_buckets, "cat:"),
        "i_creator": stable_hash(frame["creator_id"], cfg.creator_buckets, "creator:"),
        "i_type": np.fromiter(
            (CONTENT_TYPE_CODE.get(str(t), 0) for t in types), np.int64, len(types)
        ),
        "i_lang": stable_hash(frame["language"], cfg.language_buckets, "lang:"),
        "i_dur": duration_bucket(np.asarray(frame["duration_s"], dtype=np.float64)),
    }


def type_match(u_pref: np.ndarray, i_type: np.ndarray) -> np.ndarray:
    """1.0 where the item's type fits the user's preferred type (MIXED or unknown fit both)."""
    u_pref = np.asarray(u_pref)
    i_type = np.asarray(i_type)
    fits = (u_pref == PREFERRED_CODE["MIXED"]) | (u_pref == 0) | (u_pref == i_type)
    return fits.astype(np.float32)


def to_tensors(
    batch: Mapping[str, object], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
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
        t = (
            t.to(torch.float32)
            if name in _FLOAT_COLUMNS
            else t.to(torch.int64)
            if not t.is_floating_point()
            else t
        )
        out[name] = t.to(device)
    return out


def frame_columns(
    frame: pd.DataFrame, names: tuple[str, ...] | list[str]
) -> dict[str, torch.Tensor]:
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
