"""Feeds served in the simulated world by a reference model and by candidate models, for the
bias-audit tests (not a test module).

Each user gets ``SLOTS`` impressions; each one is the Gumbel-max pick, on the world's true
logits, among ``CANDIDATES`` popularity-drawn items (a personalised model). A candidate
model may hide items (``Suppress``): French creators for everyone, or age band 0's
favourite categories for that band.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pandas as pd

from app.experiments.assignment import assign_arm
from data.simulate.affinity import candidate_logits
from data.simulate.sessions import ExposureSampler
from data.simulate.world import CATEGORY_NAMES, CONTENT_TYPES, World, WorldConfig

SLOTS, CANDIDATES = 20, 12  # impressions per user, popularity-drawn candidates per slot
# (world, owners [m], candidates [m, CANDIDATES]) -> True where the model hides the item.
Suppress = Callable[[World, np.ndarray, np.ndarray], np.ndarray]


@cache
def audit_world() -> World:
    return World.generate(WorldConfig(seed=4, n_users=5_000, n_items=20_000, n_creators=1_000))


def serve(world: World, users: np.ndarray, seed: int, suppress: Suppress | None) -> np.ndarray:
    """Item per (user, slot) [n, SLOTS]: Gumbel-max over popularity-drawn candidates' true
    logits (a personalised model), minus what ``suppress`` hides."""
    rng = np.random.default_rng(seed)
    n = users.shape[0]
    candidates = ExposureSampler(world).draw(rng, (n * SLOTS, CANDIDATES))
    owners = np.repeat(users, SLOTS)
    score = candidate_logits(world, owners, candidates) + rng.gumbel(size=candidates.shape)
    if suppress is not None:
        hidden = suppress(world, owners, candidates)
        score = np.where(hidden, -np.inf, score)
    chosen = candidates[np.arange(candidates.shape[0]), score.argmax(axis=1)]
    return chosen.reshape(n, SLOTS)


@cache
def served_frames(suppress: Suppress | None, candidate_seed: int = 2):
    """(impressions, users, items) of a 30 % canary serving ``suppress``'s model."""
    world = audit_world()
    ids = np.array([f"u{i}" for i in range(world.n_users)])
    canary = np.array([assign_arm(u, 0.3, "audit") == "canary" for u in ids])
    parts = []
    for arm, mask, policy, seed in (
        ("champion", ~canary, None, 1),
        ("canary", canary, suppress, candidate_seed),
    ):
        users = np.flatnonzero(mask)
        items = serve(world, users, seed, policy)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": np.repeat(ids[users], SLOTS),
                    "arm": arm,
                    "media_id": [f"m{i}" for i in items.ravel()],
                }
            )
        )
    languages = np.asarray(world.config.languages)
    users = pd.DataFrame(
        {
            "user_id": ids,
            "age_band": world.user_age_band.astype(str),
            "language": languages[world.user_language],
        }
    )
    creator = world.item_creator
    items = pd.DataFrame(
        {
            "media_id": [f"m{i}" for i in range(world.n_items)],
            "category": np.asarray(CATEGORY_NAMES)[world.item_category],
            "content_type": np.asarray([t.value for t in CONTENT_TYPES])[world.item_content_type],
            "creator_language": languages[world.creator_language[creator]],
            "creator_subscribers": world.creator_subscribers[creator],
        }
    )
    return pd.concat(parts, ignore_index=True), users, items


def hide_french_creators(world: World, owners: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    french = world.config.languages.index("fr")
    return world.creator_language[world.item_creator[candidates]] == french


def hide_band_zero_favourites(
    world: World, owners: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Hide from age band 0 the three categories band 0 is shown most by the reference."""
    band0 = np.flatnonzero(world.user_age_band == 0)
    shown = serve(world, band0, 1, None)
    favourites = np.bincount(world.item_category[shown].ravel()).argsort()[-3:]
    return (world.user_age_band[owners] == 0)[:, None] & np.isin(
        world.item_category[candidates], favourites
    )
