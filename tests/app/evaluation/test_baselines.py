"""Popularity and EASE against independent computations."""

import numpy as np
import pytest
import scipy.sparse as sp

from app.evaluation.baselines import EASE, Popularity


def test_popularity_counts_training_interactions():
    x = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32))
    assert Popularity(x)(np.array([0, 1])).tolist() == [[2, 0, 1], [2, 0, 1]]


def test_ease_columns_are_constrained_ridge_regressions():
    rng = np.random.default_rng(1)
    x = (rng.random((30, 6)) < 0.4).astype(np.float64)
    x[:, 5] = 0  # an item nobody trained on
    lam = 2.0
    model = EASE(sp.csr_matrix(x), lam, dual=False)
    b = np.zeros((6, 6))
    b[np.ix_(model.active, model.active)] = model.weights
    assert np.allclose(np.diag(b), 0)
    for j in range(5):  # column j = ridge of item j on the other items
        others = [i for i in range(5) if i != j]
        a = x[:, others]
        w = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ x[:, j])
        assert np.allclose(b[others, j], w)
    scores = model(np.arange(30))
    assert np.allclose(scores, x @ b)
    assert np.all(scores[:, 5] == 0)


def test_ease_rejects_non_positive_lambda():
    with pytest.raises(ValueError, match="lam"):
        EASE(sp.csr_matrix(np.eye(2)), 0.0)


def test_ease_dual_form_equals_the_primal():
    rng = np.random.default_rng(2)
    x = sp.csr_matrix((rng.random((8, 20)) < 0.3).astype(np.float64))
    primal, dual = EASE(x, 3.0, dual=False), EASE(x, 3.0)
    assert dual.dual and not primal.dual
    users = np.arange(8)
    assert np.allclose(dual(users), primal(users))
