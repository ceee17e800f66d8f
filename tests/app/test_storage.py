"""The catalogue's one reading: one row per media id, the latest record wins."""

from __future__ import annotations

import pyarrow as pa

from app.storage import CATALOGUE_SCHEMA, catalogue_table, latest_per_item


def test_latest_record_per_item_wins_in_order_of_those_records() -> None:
    table = pa.table({"media_id": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})
    latest = latest_per_item(table)
    assert latest.to_pydict() == {"media_id": ["a", "c", "b"], "v": [3, 4, 5]}
    assert latest_per_item(table.slice(0, 0)).num_rows == 0


def test_catalogue_table_decodes_casts_and_fills_absent_columns() -> None:
    raw = pa.table(
        {
            "media_id": pa.array(["m1", "m2", "m1"]).dictionary_encode(),
            "category": pa.array(["news", "music", "sport"]).dictionary_encode(),
            "duration_s": pa.array([10, 20, 30], pa.int32()),
        }
    )
    table = catalogue_table(raw)
    assert table.schema == CATALOGUE_SCHEMA
    assert table.column("media_id").to_pylist() == ["m2", "m1"]
    assert table.column("category").to_pylist() == ["music", "sport"]
    assert table.column("duration_s").to_pylist() == [20.0, 30.0]
    assert table.column("creator_id").null_count == 2
