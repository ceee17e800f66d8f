"""The simulated world's user and creator attributes as offline-store tables, for the bias
audit (``app.experiments.offline``): ``<offline>/users/`` (``user_id``, ``age_band``,
``language``) and ``<offline>/creators/`` (``creator_id``, ``language``, ``subscribers``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.config import FeedraySettings
from app.experiments.offline import creators_root, users_root
from app.storage import resolve_fs
from data.simulate.world import World, user_id


def user_table(world: World) -> pa.Table:
    languages = np.asarray(world.config.languages)
    return pa.table(
        {
            "user_id": [user_id(i) for i in range(world.n_users)],
            "age_band": world.user_age_band.astype(str),
            "language": languages[world.user_language],
        }
    )


def creator_table(world: World) -> pa.Table:
    languages = np.asarray(world.config.languages)
    return pa.table(
        {
            "creator_id": [f"c{i}" for i in range(world.n_creators)],
            "language": languages[world.creator_language],
            "subscribers": world.creator_subscribers.astype(np.int64),
        }
    )


def write_profiles(world: World, settings: FeedraySettings) -> dict[str, str]:
    """Write (replace) both tables; returns table name -> file written."""
    written = {}
    for name, root, table in (
        ("users", users_root(settings), user_table(world)),
        ("creators", creators_root(settings), creator_table(world)),
    ):
        fs, base = resolve_fs(root)
        fs.create_dir(base, recursive=True)
        path = f"{base}/part-0.parquet"
        pq.write_table(table, path, filesystem=fs)
        written[name] = path
    return written
