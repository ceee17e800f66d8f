"""Load a simulated world into the stand-in online store (tests, benchmark, demos).

Stand-in for what data/collector.py + data/catalogue.py + data/trending.py will write from
the event stream: item records with counters, user records, trending lists per type and
language. Users' ``recent_media`` are drawn from items they would like (their preferred
type and language), so "nothing recently consumed" is a real constraint in tests.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.serving.assembly import TrendingEntry
from data.simulate.world import CATEGORY_NAMES, CONTENT_TYPES, PREFERRED_TYPES, World
from deployments.standins import item_record, write_items, write_trending, write_user


def seed_world(client: Any, world: World, *, now_s: float | None = None, n_users: int | None = None, recent: int = 30, trending_k: int = 200, seed: int = 0) -> dict:
    now_s = time.time() if now_s is None else now_s
    rng = np.random.default_rng(seed)
    n = world.n_items
    languages = np.asarray(world.config.languages)
    types = np.asarray([str(t) for t in CONTENT_TYPES])
    categories = np.asarray(CATEGORY_NAMES)
    pop = world.item_popularity.astype(np.float64)
    starts = rng.poisson(np.minimum(pop * 20, 1e6))
    completes = rng.binomial(starts, 0.3)
    likes = rng.binomial(starts, 0.1)
    dislikes = rng.binomial(starts, 0.02)
    views_1h = rng.poisson(np.minimum(pop, 1e5))
    # Published within the last year, relative to now (so trending recency is meaningful).
    age_s = rng.random(n) * 365 * 86_400
    published = now_s - age_s
    records = (
        item_record(
            f"m{i}", f"c{world.item_creator[i]}", types[world.item_content_type[i]], categories[world.item_category[i]],
            languages[world.item_language[i]], float(world.item_duration_s[i]), float(published[i]),
            starts=starts[i], completes=completes[i], likes=likes[i], dislikes=dislikes[i], views_1h=views_1h[i],
        )  # fmt: skip
        for i in range(n)
    )
    write_items(client, records)

    # Trending: the seed's score, per (type, language) and per type over all languages.
    from app.features.definitions import completion_rate, like_ratio, trending_score

    score = trending_score(views_1h, age_s / 3600.0, completion_rate(completes, starts), like_ratio(likes, dislikes))
    trending_lists = 0
    for t_code, t_name in enumerate(types):
        for lang_code, lang in [(None, "all"), *enumerate(languages)]:
            mask = world.item_content_type == t_code
            if lang_code is not None:
                mask &= world.item_language == lang_code
            idx = np.flatnonzero(mask)
            top = idx[np.argsort(-score[idx], kind="stable")[:trending_k]]
            write_trending(client, t_name, str(lang), [
                TrendingEntry(f"m{i}", float(score[i]), t_name, f"c{world.item_creator[i]}", str(categories[world.item_category[i]]), str(lang if lang_code is not None else languages[world.item_language[i]]))
                for i in top
            ])  # fmt: skip
            trending_lists += 1

    # Users: preferred type, language, top categories from taste, recently consumed items.
    n_users = world.n_users if n_users is None else min(n_users, world.n_users)
    centroids = world.category_centroids
    affinity = world.user_taste[:n_users].astype(np.float32) @ centroids.T
    top_cats = np.argsort(-affinity, axis=1)[:, :3]
    pipe = client.pipeline(transaction=False)
    for u in range(n_users):
        pref = world.user_preferred_type[u]
        lang = world.user_language[u]
        pool_mask_lang = world.item_language == lang
        if pref < 2:
            pool_mask_lang = pool_mask_lang & (world.item_content_type == pref)
        pool = np.flatnonzero(pool_mask_lang[:: max(1, n // 20_000)]) * max(1, n // 20_000)
        recent_items = rng.choice(pool, size=min(recent, len(pool)), replace=False) if len(pool) else []
        record = {
            "preferred_content_type": str(PREFERRED_TYPES[pref]),
            "preferred_language": str(languages[lang]),
            "top_categories": [str(categories[c]) for c in top_cats[u]],
            "recent_media": [f"m{i}" for i in recent_items],
        }
        write_user(pipe, f"u{u}", record)
        if u % 2_000 == 1_999:
            pipe.execute()
    pipe.execute()
    return {"items": n, "users": n_users, "trending_lists": trending_lists}
