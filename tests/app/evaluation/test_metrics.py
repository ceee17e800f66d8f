"""Full-ranking metrics checked by hand on tiny cases."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from app.evaluation.metrics import Interactions, full_ranking, ranking_metrics, top_k
from app.evaluation.splits import given_split


def test_metrics_of_one_ranked_list_by_hand():
    ranked = np.array([[3, 1, 0, 2]])
    relevant = sp.csr_matrix(np.array([[0, 1, 1, 0]], dtype=np.float32))
    m = ranking_metrics(ranked, relevant, ks=(2, 4))
    assert m["recall@2"][0] == pytest.approx(0.5)
    assert m["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["hit@2"][0] == 1.0
    assert m["mrr@2"][0] == pytest.approx(0.5)
    assert m["recall@4"][0] == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert m["ndcg@4"][0] == pytest.approx(dcg / (1 + 1 / math.log2(3)))


def test_no_hit_scores_zero_and_ideal_dcg_is_cut_at_k():
    ranked = np.array([[0, 1], [0, 1]])
    relevant = sp.csr_matrix(np.array([[0, 0, 1], [1, 1, 1]], dtype=np.float32))
    m = ranking_metrics(ranked, relevant, ks=(2,))
    assert m["recall@2"].tolist() == [0.0, pytest.approx(2 / 3)]
    assert m["ndcg@2"].tolist() == [0.0, pytest.approx(1.0)]  # ideal over min(3, 2) ranks
    assert m["mrr@2"].tolist() == [0.0, 1.0]


def test_top_k_masks_excluded_and_breaks_ties_by_position():
    scores = np.array([[5.0, 1.0, 1.0, 9.0]])
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 1]], dtype=np.float32))
    assert top_k(scores, exclude, 3).tolist() == [[0, 1, 2]]


def _data() -> Interactions:
    train = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    valid = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["z", "y"]})
    test = pd.DataFrame({"user_id": ["a"], "item_id": ["w"]})
    return Interactions.from_split(given_split(train, valid, test), items=["x", "y", "z", "w", "v"])


def test_full_ranking_excludes_training_items():
    data = _data()
    assert data.items.tolist() == ["v", "w", "x", "y", "z"]

    # every user scores its training items highest; they must not count
    def score(users):
        return data.train[users].toarray() * 10 + np.array([0, 0, 0, 1, 2])

    m = full_ranking(score, data, "valid", ks=(1, 2))
    # a: x, y excluded -> z first (relevant); b: x excluded -> z, y: y at rank 2
    assert m["users"] == 2
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["mrr@2"] == pytest.approx((1 + 0.5) / 2)


def test_test_part_also_excludes_validation_items():
    data = _data()
    seen = data.seen("test").toarray()
    assert seen[0].tolist() == [0, 0, 1, 1, 1]  # a: x, y (train) and z (valid)
    m = full_ranking(lambda u: np.tile([0.0, 1.0, 0, 0, 5.0], (len(u), 1)), data, "test", ks=(1,))
    assert m["users"] == 1 and m["hit@1"] == 1.0  # z would win but is a validation item


def test_batches_do_not_change_the_result():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, 400).astype(str),
            "item_id": rng.integers(0, 60, 400).astype(str),
        }
    )
    data = Interactions.from_split(
        given_split(frame.iloc[:300], frame.iloc[300:], frame.iloc[300:])
    )
    w = rng.normal(size=(len(data.users), len(data.items)))
    a = full_ranking(lambda u: w[u], data, "valid", batch=7)
    b = full_ranking(lambda u: w[u], data, "valid", batch=1000)
    assert a == pytest.approx(b)


def test_mean_ranking_metrics_divides_recall_by_all_relevant_and_skips_empty_users():
    from app.evaluation.metrics import mean_ranking_metrics

    ranked = np.array([[0, 1], [2, 3], [4, 5]])
    relevant = [np.array([0, 1, 7, 8]), np.array([], dtype=np.int64), np.array([5, -1])]
    m = mean_ranking_metrics(ranked, relevant, ks=(2,))
    # user 0: 2 hits of 4 relevant (not of min(4, K) = 2); user 1 skipped; user 2: 1 of 1
    assert m["recall@2"] == pytest.approx((2 / 4 + 1.0) / 2)
    assert m["ndcg@2"] == pytest.approx((1.0 + (1 / math.log2(3)) / 1.0) / 2)
    assert m["hit@2"] == 1.0 and m["mrr@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert math.isnan(mean_ranking_metrics(ranked, [np.array([], dtype=np.int64)] * 3)["recall@10"])
