"""The Ray Data training-set job: point-in-time by day, and equal to the pandas reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.models.config import FeatureSettings
from app.models.features import stable_hash
from app.storage import CATALOGUE_SCHEMA
from data.training_sets import build_training_set, load_training_set

pytestmark = pytest.mark.integration

DAY = pd.Timestamp("2025-03-10", tz="UTC")
H = pd.Timedelta(hours=1)
CFG = FeatureSettings(user_buckets=1 << 12, item_buckets=1 << 12, creator_buckets=1 << 10)


def _write_store(root: Path, events: list[tuple]) -> tuple[Path, Path]:
    """Events (user, media, type, time, session) as hourly Parquet files + a 3-item catalogue."""
    frame = pd.DataFrame(
        events, columns=["user_id", "media_id", "event_type", "timestamp", "session_id"]
    )
    frame["content_type"] = "VIDEO"
    frame["hour"] = frame["timestamp"].dt.floor("h")
    for hour, part in frame.groupby("hour"):
        folder = root / "events" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(part.drop(columns="hour"), preserve_index=False),
            folder / "part-0.parquet",
        )
    catalogue = pa.table(
        {
            "media_id": ["m1", "m2", "m3"],
            "creator_id": ["c1", "c1", "c2"],
            "category": ["music", "music", "news"],
            "language": ["en", "en", "fr"],
            "content_type": ["VIDEO"] * 3,
            "duration_s": [100.0, 200.0, 300.0],
            "published_at": [DAY - pd.Timedelta(days=5)] * 3,
        },
        schema=CATALOGUE_SCHEMA,
    )
    (root / "catalogue").mkdir(parents=True)
    pq.write_table(catalogue, root / "catalogue" / "part-0.parquet")
    return root / "events", root / "catalogue"


def test_an_example_sees_the_day_before_never_its_own_day(ray_local, tmp_path: Path) -> None:
    """u1 likes m1 on day 0 at 23:00 (counts) and likes m3 on day 1 at 09:00, an hour before
    the day-1 slot on m2 (must not count); other users give day 0 and day 1 their volume."""
    day1 = DAY + pd.Timedelta(days=1)
    events = [
        ("u1", "m1", "media_started", DAY + 23 * H, "a"),
        ("u1", "m1", "media_liked", DAY + 23 * H + pd.Timedelta(minutes=1), "a"),
        ("u1", "m3", "media_started", day1 + 9 * H, "b"),
        ("u1", "m3", "media_liked", day1 + 9 * H + pd.Timedelta(minutes=1), "b"),
        ("u1", "m2", "media_started", day1 + 10 * H, "b"),
        ("u1", "m2", "media_completed", day1 + 10 * H + pd.Timedelta(minutes=3), "b"),
    ]
    events += [(f"v{i}", "m2", "media_started", DAY + i * H, f"s{i}") for i in range(20)]
    events += [(f"v{i}", "m2", "media_started", day1 + i * H, f"t{i}") for i in range(20)]
    paths = _write_store(tmp_path, events)
    out = build_training_set(*paths, tmp_path / "ts", CFG, eval_days=0.0, buckets=3)
    ts = load_training_set(out)
    rows = ts.train[(ts.train["user_id"] == "u1") & (ts.train["media_id"] == "m2")]
    assert len(rows) == 1
    row = rows.iloc[0]
    m1, m2, m3 = (
        int(stable_hash(pd.Series([m]), CFG.item_buckets, "item:")[0]) for m in ("m1", "m2", "m3")
    )
    assert row["u_hist"][:2].tolist() == [m1, 0]  # m3's like and m2's completion are day 1
    assert row["u_dense"][0] == pytest.approx(np.log1p(1.0) / 5.0)  # one play before day 1
    # m2's own starts: 20 on day 0 count, none of day 1
    assert row["i_dense"][0] == pytest.approx(np.log1p(20.0) / 5.0)
    assert row["label_completed"] == 1.0 and row["day"] == 1
    # the users table is as of the end of the data: newest positive first
    u1 = ts.users.set_index("user_id").loc["u1"]
    assert u1["u_hist"][:4].tolist() == [m2, m3, m1, 0]
    # the last day held out: no training rows, every example is evaluation
    held = load_training_set(build_training_set(*paths, tmp_path / "held", CFG, eval_days=1.0))
    assert held.train.empty and held.meta["train_rows"] == 0
    assert len(held.eval) == len(ts.train)
    np.testing.assert_allclose(held.eval["log_q"], np.log(0.5), rtol=1e-6)


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no events"):
        build_training_set(tmp_path / "nothing", tmp_path / "cat", tmp_path / "out")


def _same(ray_frame: pd.DataFrame, ref: pd.DataFrame, keys: list[str]) -> None:
    assert sorted(ray_frame.columns) == sorted(ref.columns)
    a = ray_frame.sort_values(keys, kind="stable").reset_index(drop=True)
    b = ref.sort_values(keys, kind="stable").reset_index(drop=True)
    assert len(a) == len(b)
    for name in ref.columns:
        x, y = a[name].to_numpy(), b[name].to_numpy()
        if x.dtype == object and len(x) and isinstance(x[0], np.ndarray):
            x, y = np.stack(x), np.stack(y)
        if np.issubdtype(np.asarray(y).dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.slow
def test_ray_job_equals_the_pandas_reference(ray_local, tmp_path: Path) -> None:
    from data.simulate.store import write_simulated_store
    from data.simulate.world import World, WorldConfig
    from tests.data.reference_training_set import build_training_set as reference

    world = World.generate(WorldConfig(seed=3, n_users=400, n_items=600, n_creators=40))
    events, catalogue = write_simulated_store(world, 3.0, tmp_path / "store")
    held_out = {"m1", "m2", "m3"}
    kwargs = {"eval_days": 1.0, "exclude_items": held_out}
    ref = reference(events, catalogue, CFG, **kwargs)
    ts = load_training_set(build_training_set(events, catalogue, tmp_path / "ts", CFG, **kwargs))
    assert len(ref.train) > 1_000 and len(ref.eval) > 300 and ref.train["positive"].any()
    keys = ["ts_ms", "user_id", "media_id"]
    _same(ts.train, ref.train, keys)
    _same(ts.eval, ref.eval, keys)
    _same(ts.users, ref.users, ["user_id"])
    _same(ts.items.drop(columns=["starts"]), ref.items.drop(columns=["starts"]), ["media_id"])
    np.testing.assert_allclose(ts.items["starts"], ref.items["starts"])
    for key in ("first_day_ms", "eval_from_ms", "end_ms", "train_rows", "eval_rows",
                "train_positives", "eval_positives", "items", "users", "features"):  # fmt: skip
        assert ts.meta[key] == ref.meta[key], key


@pytest.mark.parametrize("hour", [4, 16])
def test_held_out_days_end_with_data_that_stops_part_way_through_a_day(
    ray_local, tmp_path: Path, hour: int
) -> None:
    """Two days from ``hour`` end part-way through the third day, as a world simulated up to
    "now" does: the hold-out is the last 6 h of data (or more, with a short last day folded
    into the one before), never the 6 h before the next midnight, which hold no data."""
    from datetime import UTC, datetime

    from data.simulate.store import write_simulated_store
    from data.simulate.world import DAY_MS, World, WorldConfig
    from tests.data.reference_training_set import load_events

    start = datetime(2025, 3, 1, hour, tzinfo=UTC)
    config = WorldConfig(seed=1, n_users=300, n_items=1_000, n_creators=40, start=start)
    events, catalogue = write_simulated_store(World.generate(config), 2.0, tmp_path / "store")
    ts = load_training_set(build_training_set(events, catalogue, tmp_path / "ts", eval_days=0.25))
    data_end = int(load_events(events)["ts"].max()) + 1
    assert ts.meta["eval_rows"] > 0 and ts.meta["train_rows"] > 0
    assert ts.meta["eval_from_ms"] <= data_end - DAY_MS // 4
    assert (ts.train["ts_ms"] < ts.meta["eval_from_ms"]).all()
    assert (ts.eval["ts_ms"] >= ts.meta["eval_from_ms"]).all()
