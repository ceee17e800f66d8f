"""The point-in-time training set's evaluation hold-out (``train.data.build_training_set``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from data.simulate.world import DAY_MS, World, WorldConfig
from train.data import build_training_set, load_events, write_simulated_store


@pytest.mark.parametrize("hour", [4, 10, 16, 22])
def test_held_out_days_end_with_data_that_stops_part_way_through_a_day(
    tmp_path: Path, hour: int
) -> None:
    # Two days from ``hour`` end part-way through the third day, as a world simulated up to
    # "now" does: the hold-out is the last 6 h of data (or more, with a short last day folded
    # into the one before), never the 6 h before the next midnight, which hold no data.
    start = datetime(2025, 3, 1, hour, tzinfo=UTC)
    config = WorldConfig(seed=1, n_users=300, n_items=1_000, n_creators=40, start=start)
    events, catalogue = write_simulated_store(World.generate(config), 2.0, tmp_path)
    ts = build_training_set(events, catalogue, eval_days=0.25)
    data_end = int(load_events(events)["ts"].max()) + 1
    assert ts.meta["eval_rows"] > 0 and ts.meta["train_rows"] > 0
    assert ts.meta["eval_from_ms"] <= data_end - DAY_MS // 4
    assert (ts.train["ts_ms"] < ts.meta["eval_from_ms"]).all()
    assert (ts.eval["ts_ms"] >= ts.meta["eval_from_ms"]).all()
