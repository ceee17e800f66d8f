"""The dataset -> wire mapping: every message validates, strengths and times map as documented."""

import numpy as np
import pandas as pd
import pytest

from app.schemas import parse_engagement_event, parse_media_published
from data.importers.mapping import Mapping, events, messages, publications
from data.importers.readers import Dataset, DatasetError


def _dataset(kind="rating", strength=(5.0, 3.0, 4.0), ts=(100.0, 90.0, 95.0), part=""):
    inter = pd.DataFrame(
        {
            "user_id": ["1", "1", "2"],
            "item_id": ["10", "11", "10"],
            "strength": list(strength),
            "timestamp": list(ts),
            "part": part,
            "row": [0, 1, 2],
        }
    )
    items = pd.DataFrame(
        {"item_id": ["10", "11"], "title": ["Alien", None], "category": ["Horror", None]}
    )
    return Dataset("toy", inter, items, kind)


def test_ratings_map_to_completed_plus_liked_at_threshold():
    evs = events(_dataset(), Mapping(namespace="ml:"))
    types = [(e["user_id"], e["media_id"], e["event_type"]) for e in evs]
    assert types == [
        ("ml:1", "ml:10", "media_completed"),
        ("ml:1", "ml:10", "media_liked"),
        ("ml:1", "ml:11", "media_completed"),
        ("ml:2", "ml:10", "media_completed"),
        ("ml:2", "ml:10", "media_liked"),
    ]
    parsed = [parse_engagement_event(v) for v in messages(evs, "user_id")[1]]
    assert parsed[0].timestamp.timestamp() == 100.0 and parsed[0].consumed_fraction == 1.0
    assert len({e.event_id for e in parsed}) == len(parsed)


def test_play_counts_add_a_replay_from_two_plays():
    evs = events(_dataset("count", strength=(1.0, 2.0, 50.0)))
    assert [e["event_type"] for e in evs] == [
        "media_completed",
        "media_completed",
        "media_replay",
        "media_completed",
        "media_replay",
    ]


def test_missing_time_follows_file_order_across_given_parts():
    d = _dataset("implicit", strength=(np.nan,) * 3, ts=(np.nan,) * 3)
    d.interactions["part"] = ["train", "valid", "test"]
    m = Mapping(base_time_s=1_000.0)
    times = [
        parse_engagement_event(v).timestamp.timestamp()
        for v in messages(events(d, m), "user_id")[1]
    ]
    assert times == [1_000.0, 1_001.0, 1_002.0]


def test_publications_validate_and_precede_every_event():
    d = _dataset()
    pubs = publications(d, Mapping(namespace="ml:"))
    parsed = [parse_media_published(v) for v in messages(pubs, "media_id")[1]]
    assert [p.media_id for p in parsed] == ["ml:10", "ml:11"]
    assert parsed[0].title == "Alien" and parsed[0].category == "Horror"
    assert parsed[1].title is None and parsed[1].category == "unknown"
    assert parsed[0].creator_id == "ml:unknown" and parsed[0].language == "und"
    assert parsed[0].published_at.timestamp() == 90.0 - 86_400


def test_ids_that_do_not_fit_the_wire_are_rejected():
    d = _dataset()
    d.interactions.loc[0, "user_id"] = "has space"
    with pytest.raises(DatasetError, match="user ids"):
        events(d)
