"""Per-user ratio / time / given splits."""

import numpy as np
import pandas as pd
import pytest

from app.evaluation.splits import given_split, ratio_split, split_counts, time_split


@pytest.mark.parametrize(
    ("n", "expected"),
    [(10, [8, 1, 1]), (5, [3, 1, 1]), (3, [1, 1, 1]), (2, [1, 0, 1]), (1, [1, 0, 0])],
)
def test_split_counts_follow_recbole_rule(n, expected):
    assert split_counts(n, (0.8, 0.1, 0.1)) == expected


def _frame(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(u, f"i{j}", float(100 - j)) for u, n in sizes.items() for j in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_ratio_split_partitions_each_user_and_is_seeded():
    frame = _frame({"a": 10, "b": 5, "c": 2, "d": 1})
    s = ratio_split(frame, seed=3)
    assert s.sizes() == {"train": 8 + 3 + 1 + 1, "valid": 1 + 1 + 0, "test": 1 + 1 + 1}
    for user, group in frame.groupby("user_id"):
        parts = [set(p.loc[p.user_id == user, "item_id"]) for p in (s.train, s.valid, s.test)]
        assert set.union(*parts) == set(group["item_id"])
        assert sum(len(p) for p in parts) == len(group)
    again = ratio_split(frame, seed=3)
    pd.testing.assert_frame_equal(s.test, again.test)
    other = ratio_split(frame, seed=4)
    assert not s.train.equals(other.train)


def test_time_split_puts_latest_rows_in_test():
    frame = _frame({"a": 10})  # item i9 has the earliest timestamp, i0 the latest
    s = time_split(frame)
    assert list(s.test["item_id"]) == ["i0"]
    assert list(s.valid["item_id"]) == ["i1"]
    assert sorted(s.train["item_id"]) == sorted(f"i{j}" for j in range(2, 10))
    assert np.all(np.diff(s.train["timestamp"].to_numpy()) >= 0)


def test_time_split_ties_keep_input_order():
    frame = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["x", "y", "z"], "timestamp": 1.0})
    s = time_split(frame)
    assert (list(s.train.item_id), list(s.valid.item_id), list(s.test.item_id)) == (
        ["x"],
        ["y"],
        ["z"],
    )


def test_time_split_needs_timestamps():
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    with pytest.raises(ValueError, match="timestamp"):
        time_split(frame)


def test_given_split_is_kept_and_checked():
    t = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    s = given_split(t, t.iloc[:1], t.iloc[1:])
    assert s.sizes() == {"train": 2, "valid": 1, "test": 1}
    with pytest.raises(ValueError, match="valid"):
        given_split(t, pd.DataFrame({"user": ["a"]}), t)
