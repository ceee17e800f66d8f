"""Pure checks of the packed layouts (no Redis): one definition gives dtype and Lua format."""

from __future__ import annotations

import re

import numpy as np

from app.features import definitions as d
from app.features.layout import ITEM_LAYOUT, ITEM_STATIC_SIZE, USER_CORE_LAYOUT, KINDS


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
