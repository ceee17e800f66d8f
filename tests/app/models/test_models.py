import numpy as np
import torch

from app.evaluation.metrics import mean_ranking_metrics
from app.models.config import (
    FeatureSettings,
    RankerSettings,
    TwoTowerSettings,
    default_head_weights,
)
from app.models.evaluation import gate
from app.models.features import stable_hash
from app.models.metrics import auc, log_loss
from app.models.ranker import Ranker
from app.models.two_tower import TwoTower, in_batch_loss

F = FeatureSettings(user_buckets=1000, item_buckets=1000, creator_buckets=100)


def _batch(b=16):
    g = torch.Generator().manual_seed(0)
    r = lambda hi, *s: torch.randint(1, hi, s or (b,), generator=g)  # noqa: E731
    return {
        "u_hash": r(1000),
        "u_hist": r(1000, b, 20),
        "u_cats": r(100, b, 3),
        "u_lang": r(100),
        "u_pref": r(4),
        "u_dense": torch.rand(b, 4),
        "i_hash": torch.arange(1, b + 1),
        "i_cat": r(100),
        "i_creator": r(100),
        "i_type": r(3),
        "i_lang": r(100),
        "i_dur": r(13),
        "i_dense": torch.rand(b, 5),
        "label_completed": torch.rand(b).round(),
        "label_strong": torch.rand(b).round(),
        "label_negative": torch.rand(b).round(),
        "log_q": torch.full((b,), -5.0),
    }


def test_stable_hash_is_deterministic_and_reserves_zero():
    a = stable_hash(["u1", "u2", None, ""], 64, "user:")
    assert list(a[2:]) == [0, 0] and (a[:2] >= 1).all() and (a[:2] < 64).all()
    assert (stable_hash(["u1", "u2"], 64, "user:") == a[:2]).all()


def test_two_tower_embeddings_are_unit_and_cold_items_use_features():
    model = TwoTower(F, TwoTowerSettings(output_dim=64))
    b = _batch()
    u, v = model(b)
    assert u.shape == (16, 64) and torch.allclose(v.norm(dim=1), torch.ones(16), atol=1e-5)
    # an untrained id row is exactly zero, the same input as id dropout
    assert model.content.item_id.weight[5].abs().sum() == 0
    loss = in_batch_loss(u, v, b["i_hash"], 0.05, b["log_q"])
    assert torch.isfinite(loss)


def test_ranker_three_heads_and_value_weights():
    model = Ranker(F, RankerSettings())
    out = model.score(_batch())
    assert set(out) == {"completed", "strong", "negative", "value"} and out["value"].shape == (16,)
    w = default_head_weights()
    assert w["completed"] == 1.0 and w["negative"] < 0 < w["strong"]


def test_metrics():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert log_loss(np.array([1, 0]), np.array([0.9, 0.1])) < 0.2
    ret = np.array([[1, 2, 3], [4, 5, 6]])
    rel = [np.array([1, 9]), np.array([6])]
    m = mean_ranking_metrics(ret, rel, ks=(3,))
    assert m["recall@3"] == 0.75  # (1/2 + 1/1) / 2: hits / |relevant|
    assert 0 < m["ndcg@3"] < 1


def test_gate():
    report = {"model": {"auc": 0.70}, "champion": {"auc": 0.705}}
    assert gate(report, "auc", 0.01).passed
    assert not gate(report | {"model": {"auc": 0.68}}, "auc", 0.01).passed
    assert gate({"model": {"auc": 0.5}}, "auc", 0.01).passed
