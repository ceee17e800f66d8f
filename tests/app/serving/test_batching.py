"""Batch assembly and splitting for the stages' batched calls (pure functions, no Serve)."""

from __future__ import annotations

import numpy as np
import pytest

from app.features.records import UserFeatures
from app.serving.batching import (
    group_rows,
    offsets_of,
    repeat_rows,
    run_grouped,
    split_rows,
    stack_columns,
)
from app.serving.catalogue import CatalogueColumns
from app.serving.stages import rank_grouped, retrieve_grouped
from app.serving.types import CandidateBatch, RankedBatch, RequestContext


def test_group_rows_keeps_first_appearance_order_and_ascending_rows():
    assert group_rows(["b", "a", "b", "c", "a"]) == {"b": [0, 2], "a": [1, 4], "c": [3]}
    assert group_rows([]) == {}


def test_run_grouped_puts_answers_back_in_call_order():
    calls = []

    def compute(key, rows):
        calls.append((key, rows))
        return [f"{key}{r}" for r in rows]

    assert run_grouped(["x", "y", "x"], compute) == ["x0", "y1", "x2"]
    assert calls == [("x", [0, 2]), ("y", [1])]


def test_run_grouped_refuses_a_wrong_answer_count():
    with pytest.raises(ValueError, match="1 answers for 2 requests"):
        run_grouped(["x", "x"], lambda key, rows: ["only one"])


def test_stack_split_round_trip():
    a = {"u": np.arange(6).reshape(3, 2), "v": np.ones(3)}
    b = {"u": np.arange(4).reshape(2, 2) + 100, "v": np.zeros(2)}
    stacked = stack_columns([a, b])
    assert stacked["u"].shape == (5, 2) and stacked["v"].tolist() == [1, 1, 1, 0, 0]
    offsets = offsets_of([3, 2])
    assert offsets.tolist() == [0, 3, 5]
    parts = split_rows(stacked["u"], offsets)
    np.testing.assert_array_equal(parts[0], a["u"])
    np.testing.assert_array_equal(parts[1], b["u"])


def test_split_rows_checks_the_total_and_allows_empty_segments():
    offsets = offsets_of([2, 0, 1])
    parts = split_rows(np.array([1.0, 2.0, 3.0]), offsets)
    assert [p.tolist() for p in parts] == [[1.0, 2.0], [], [3.0]]
    with pytest.raises(ValueError, match="4 rows"):
        split_rows(np.zeros(4), offsets)
    with pytest.raises(ValueError, match="negative"):
        offsets_of([1, -1])


def test_stack_columns_refuses_mismatched_names():
    with pytest.raises(ValueError, match="column names differ"):
        stack_columns([{"a": np.zeros(1)}, {"b": np.zeros(1)}])


def test_repeat_rows_repeats_each_request_row_by_its_candidate_count():
    users = {"u_hash": np.array([7, 9]), "u_dense": np.array([[1.0, 2.0], [3.0, 4.0]])}
    out = repeat_rows(users, [2, 3])
    assert out["u_hash"].tolist() == [7, 7, 9, 9, 9]
    assert out["u_dense"][2:].tolist() == [[3.0, 4.0]] * 3


def _candidates(ids: list[str]) -> CandidateBatch:
    n = len(ids)
    items = CatalogueColumns(
        ids, ["VIDEO"] * n, ["c"] * n, ["music"] * n, ["en"] * n, np.ones(n), np.zeros(n)
    )
    return CandidateBatch(items, np.arange(n, dtype=np.float32))


class _RecordingCore:
    """Answers with what it was asked, and records each batched call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple] = []

    def retrieve_batch(self, users, contexts, arm, k):
        self.calls.append(("retrieve", [u.user_id for u in users], arm, k))
        return [_candidates([f"{self.name}:{u.user_id}:{k}"]) for u in users]

    def rank_batch(self, users, contexts, candidates, arm):
        self.calls.append(("rank", [u.user_id for u in users], arm))
        return [RankedBatch(scores=c.scores + 1, model_version=self.name) for c in candidates]


def test_retrieve_grouped_one_batch_per_arm_and_k_answers_in_order():
    cores = {"champion": _RecordingCore("champ"), "canary": _RecordingCore("can")}
    users = [UserFeatures(user_id=f"u{i}") for i in range(4)]
    contexts = [RequestContext()] * 4
    out = retrieve_grouped(
        cores.__getitem__,
        users,
        contexts,
        ["champion", "canary", "champion", "champion"],
        [500, 500, 500, 50],
    )
    assert [c.items.media_ids[0] for c in out] == [
        "champ:u0:500",
        "can:u1:500",
        "champ:u2:500",
        "champ:u3:50",
    ]
    assert cores["champion"].calls == [
        ("retrieve", ["u0", "u2"], "champion", 500),
        ("retrieve", ["u3"], "champion", 50),
    ]
    assert cores["canary"].calls == [("retrieve", ["u1"], "canary", 500)]


def test_rank_grouped_one_forward_per_arm():
    core = _RecordingCore("champ")
    users = [UserFeatures(user_id=f"u{i}") for i in range(3)]
    candidates = [_candidates([f"m{i}"] * (i + 1)) for i in range(3)]
    out = rank_grouped(
        lambda arm: core, users, [RequestContext()] * 3, candidates, ["champion"] * 3
    )
    assert core.calls == [("rank", ["u0", "u1", "u2"], "champion")]
    assert [r.scores.tolist() for r in out] == [[1.0], [1.0, 2.0], [1.0, 2.0, 3.0]]
