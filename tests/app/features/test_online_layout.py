"""Pure checks of the packed layouts (no Redis): one definition gives dtype and Lua format."""

from __future__ import annotations

import re

import numpy as np

from app.features import definitions as d
from app.features.layout import ITEM_LAYOUT, ITEM_STATIC_SIZE, KINDS, USER_CORE_LAYOUT


def test_item_layout_has_every_raw_counter_and_ring_sizes_from_definitions() -> None:
    names = ITEM_LAYOUT.dtype.names
    assert all(c in names for c in d.ITEM_COUNTERS)
    assert ITEM_LAYOUT.dtype["h24_id"].shape == (d.WINDOW_24H_S // d.BUCKET_24H_S,)
    assert ITEM_LAYOUT.dtype["m5_starts"].shape == (d.WINDOW_1H_S // d.BUCKET_1H_S,)
    assert USER_CORE_LAYOUT.dtype["d7_sessions"].shape == (d.WINDOW_7D_S // d.BUCKET_7D_S,)
    assert ITEM_STATIC_SIZE == ITEM_LAYOUT.offset("flags") + 1


def test_lua_format_and_positions_follow_the_dtype() -> None:
    fmt = ITEM_LAYOUT.lua_format
    assert fmt.startswith("<")
    assert len(re.findall(r"I4|i4|B|H|f|d", fmt[1:])) == ITEM_LAYOUT.n_values  # one code per value
    pos = ITEM_LAYOUT.lua_positions
    assert pos["published_at_s"] == (1, 1)
    assert pos["h24_starts"][0] == pos["h24_id"][0] + pos["h24_id"][1]
    assert set(KINDS) == {"u8", "u16", "u32", "i32", "f32", "f64"}
    assert "rings={h24={size=24" in ITEM_LAYOUT.lua_table()


def test_decode_tolerates_missing_and_short_records() -> None:
    rec = ITEM_LAYOUT.zeros(2)
    rec["starts"] = [3, 4]
    blobs = [rec[0].tobytes(), None, b"short", rec[1].tobytes()]
    out, found = ITEM_LAYOUT.decode(blobs)
    assert found.tolist() == [True, False, False, True]
    assert out["starts"].tolist() == [3, 0, 0, 4]
    fast, all_found = ITEM_LAYOUT.decode([rec[0].tobytes(), rec[1].tobytes()])
    assert all_found.all() and np.array_equal(fast["starts"], [3, 4])


def test_user_core_keeps_engagement_counts_and_reads_its_first_version() -> None:
    from app.features.layout import USER_CORE_LAYOUT_V1

    for series in ("completes", "likes", "dislikes"):
        assert USER_CORE_LAYOUT.dtype[f"d7_{series}"].shape == (d.WINDOW_7D_S // d.BUCKET_7D_S,)
    # the first version is a byte prefix: the new series were appended at the end
    assert (
        USER_CORE_LAYOUT.columns()[: len(USER_CORE_LAYOUT_V1.columns())]
        == USER_CORE_LAYOUT_V1.columns()
    )
    assert USER_CORE_LAYOUT.legacy_sizes == (USER_CORE_LAYOUT_V1.size,)
    assert f"legacy={{[{USER_CORE_LAYOUT_V1.size}]=true}}" in USER_CORE_LAYOUT.lua_table()
    old = USER_CORE_LAYOUT_V1.zeros(1)
    old["d7_id"][0, 3] = 20_000
    old["d7_video"][0, 3] = 5
    old["d7_sessions"][0, 3] = 2
    rec, found = USER_CORE_LAYOUT.decode(
        [old.tobytes(), None, b"x" * (USER_CORE_LAYOUT_V1.size - 1)]
    )
    assert found.tolist() == [True, False, False]
    assert (
        rec["d7_video"][0, 3] == 5
        and rec["d7_sessions"][0, 3] == 2
        and rec["d7_id"][0, 3] == 20_000
    )
    assert rec["d7_completes"][0].sum() == 0 and rec["d7_likes"][0].sum() == 0


def test_last_second_before_makes_user_windows_half_open() -> None:
    midnight = 20_000 * d.DAY_S
    assert d.last_second_before(midnight) == midnight - 1
    assert d.last_second_before(midnight + 0.5) == midnight
    assert d.last_second_before(midnight + 1) == midnight
    ids, counts = np.arange(19_993, 20_001), np.ones(8)  # days T-7 .. T
    # at a midnight T: the 7 full days before T (day T itself is not in the window yet)
    assert (
        d.windowed_sum(
            ids, counts * (ids < 20_000), d.last_second_before(midnight), d.WINDOW_7D_S, d.DAY_S
        )
        == 7
    )
    assert (
        d.window_start_s(d.last_second_before(midnight), d.WINDOW_7D_S, d.DAY_S)
        == midnight - d.WINDOW_7D_S
    )
