"""The offline feature kernels on hand-made events: decoding, counters, as-of item columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from app.features import definitions as fd
from app.features.offline import (
    DAY_MS,
    catalogue_frame,
    decode_events,
    item_counters,
    item_features,
    slot_table,
)
from app.models.config import FeatureSettings
from app.storage import CATALOGUE_SCHEMA

CFG = FeatureSettings()


def _table() -> pa.Table:
    ts = pa.array([DAY_MS, DAY_MS + 1, DAY_MS + 2, 2 * DAY_MS], pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "event_type": pa.array(
                ["media_started", "media_liked", "media_completed", "media_started"]
            ).dictionary_encode(),
            "user_id": ["u1", "u1", "u1", "u2"],
            "media_id": ["m1", "m1", "m1", "m1"],
            "content_type": ["VIDEO"] * 4,
            "timestamp": ts,
            "session_id": ["s", "s", "s", None],
            "extra": [1, 2, 3, 4],
        }
    )


def test_decode_events_plain_strings_ms_times_and_empty_sessions() -> None:
    frame = decode_events(_table())
    assert list(frame.columns) == [
        "event_type", "user_id", "media_id", "content_type", "ts", "session_id",
    ]  # fmt: skip
    assert frame["ts"].tolist() == [DAY_MS, DAY_MS + 1, DAY_MS + 2, 2 * DAY_MS]
    assert frame["event_type"].iloc[1] == "media_liked" and frame["session_id"].iloc[3] == ""


def test_slots_carry_the_labels_of_their_events() -> None:
    slots = slot_table(decode_events(_table()), {"media_liked": 1.0, "media_completed": 0.5})
    one = slots.set_index("user_id").loc["u1"]
    assert one["ts"] == DAY_MS and one["label_completed"] == 1.0 and one["label_strong"] == 1.0
    assert one["value"] == 1.5 and len(slots) == 2


def test_item_columns_from_counters_before_the_time() -> None:
    events = decode_events(_table())
    catalogue = catalogue_frame(
        pa.table(
            {
                "media_id": ["m1", "m2"],
                "creator_id": ["c1", "c2"],
                "category": ["music", "news"],
                "language": ["en", "fr"],
                "content_type": ["VIDEO", "AUDIO"],
                "duration_s": [60.0, 120.0],
                "published_at": pa.array([0, DAY_MS], pa.timestamp("ms", tz="UTC")),
            },
            schema=CATALOGUE_SCHEMA,
        )
    )
    before = events[events["ts"] < 2 * DAY_MS]
    items = item_features(item_counters(before, ["media_id"]), catalogue, 2 * DAY_MS, CFG)
    assert items["starts"].tolist() == [1.0, 0.0]  # the day-2 start is not before the time
    m1, m2 = np.stack(items["i_dense"].to_numpy())
    assert m1[0] == np.float32(np.log1p(1.0) / 5.0)  # one start, completed
    assert m1[1] == np.float32(fd.completion_rate(1.0, 1.0))
    assert m2[0] == 0.0 and items["published_ms"].tolist() == [0, DAY_MS]
    per_day = item_counters(events.assign(day=events["ts"] // DAY_MS), ["media_id", "day"])
    assert per_day.set_index("day")["n"].to_dict() == {1: 3.0, 2: 1.0}
