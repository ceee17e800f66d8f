"""True user-item affinity: the ground truth every model is judged against.

    logit = bias + taste * dot(user_taste, item_latent)
                 + language_match * [user language == item language]
                 + content_type_match * [item type fits the user's preference; MIXED fits both]
                 + popularity * item_pop_z
    affinity = sigmoid(logit) in [0, 1]

Weights live in ``WorldConfig.affinity``. Since the sigmoid is monotonic, rankings
(``true_top_k``) use the logit directly.
"""

from __future__ import annotations

import numpy as np

from data.simulate.world import MIXED, World


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Elementwise logistic (float32 in, float32 out)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))).astype(np.float32)


def _side_terms(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Non-taste part of the logit for broadcastable ``users`` / ``items`` index arrays."""
    w = world.config.affinity
    language = world.user_language[users] == world.item_language[items]
    preferred = world.user_preferred_type[users]
    type_fit = (preferred == MIXED) | (preferred == world.item_content_type[items])
    return (
        w.bias
        + w.language_match * language
        + w.content_type_match * type_fit
        + w.popularity * world.item_pop_z[items].astype(np.float32)
    ).astype(np.float32)


def pair_logits(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits for index arrays ``users`` and ``items`` of the same (broadcastable) shape.

    ``users`` [n] with ``items`` [n] gives [n]; ``users[:, None]`` with ``items`` [n, k]
    gives [n, k]. Float32.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    users, items = np.broadcast_arrays(users, items)
    taste = world.user_taste[users].astype(np.float32)  # [..., d]
    latent = world.item_latent[items].astype(np.float32)  # [..., d]
    dot = np.einsum("...d,...d->...", taste, latent)
    return (world.config.affinity.taste * dot + _side_terms(world, users, items)).astype(np.float32)


def pair_affinity(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True affinity in [0, 1] for (user, item) index pairs; shape as ``pair_logits``."""
    return sigmoid(pair_logits(world, users, items))


def user_logits(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits of every user in ``users`` [b] against every item in ``items`` [n]: [b, n]."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    taste = world.user_taste[users].astype(np.float32)  # [b, d]
    latent = world.item_latent[items].astype(np.float32)  # [n, d]
    dot = taste @ latent.T  # [b, n]
    return world.config.affinity.taste * dot + _side_terms(world, users[:, None], items[None, :])


def user_affinity(world: World, user: int, items: np.ndarray | None = None) -> np.ndarray:
    """True affinity of one user for ``items`` (default: the whole catalogue): float32 [n]."""
    if items is None:
        items = np.arange(world.n_items)
    return sigmoid(user_logits(world, np.array([user]), items)[0])


def true_top_k(
    world: World,
    users: np.ndarray,
    k: int,
    *,
    published_before_ms: int | None = None,
    chunk_items: int = 262_144,
    batch_users: int = 256,
) -> np.ndarray:
    """The k items of highest true affinity per user, best first: int32 [len(users), k].

    Chunked over items (``chunk_items``) and users (``batch_users``) so memory stays at
    ``batch_users * (chunk_items + k)`` floats. ``published_before_ms`` restricts the
    catalogue to items already published at that time.
    """
    users = np.asarray(users, dtype=np.int64)
    k = min(k, world.n_items)
    out = np.empty((users.shape[0], k), dtype=np.int32)
    for ulo in range(0, users.shape[0], batch_users):
        batch = users[ulo : ulo + batch_users]
        best_score = np.full((batch.shape[0], 0), -np.inf, dtype=np.float32)
        best_item = np.empty((batch.shape[0], 0), dtype=np.int64)
        for lo in range(0, world.n_items, chunk_items):
            items = np.arange(lo, min(world.n_items, lo + chunk_items))
            scores = user_logits(world, batch, items)
            if published_before_ms is not None:
                scores[:, world.item_publish_ms[items] > published_before_ms] = -np.inf
            score = np.concatenate([best_score, scores], axis=1)
            item = np.concatenate([best_item, np.broadcast_to(items, scores.shape)], axis=1)
            if score.shape[1] > k:
                keep = np.argpartition(-score, k - 1, axis=1)[:, :k]
                score = np.take_along_axis(score, keep, axis=1)
                item = np.take_along_axis(item, keep, axis=1)
            best_score, best_item = score, item
        order = np.argsort(-best_score, axis=1, kind="stable")
        out[ulo : ulo + batch.shape[0]] = np.take_along_axis(best_item, order, axis=1)
    return out


def candidate_logits(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits of user ``users[i]`` [n] for each of its candidates ``items[i]`` [n, k]: [n, k].

    Gathers each user's taste once (cheaper than ``pair_logits`` on broadcast indices).
    """
    users = np.asarray(users)
    taste = world.user_taste[users].astype(np.float32)  # [n, d]
    latent = world.item_latent[items].astype(np.float32)  # [n, k, d]
    dot = np.einsum("nd,nkd->nk", taste, latent)
    return (world.config.affinity.taste * dot + _side_terms(world, users[:, None], items)).astype(
        np.float32
    )
