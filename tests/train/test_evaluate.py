"""``feedray evaluate`` end to end on a small generated dataset, and its two-tower inputs."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from app.evaluation.metrics import Interactions
from app.evaluation.splits import ratio_split
from app.models.config import (
    EvaluationSettings,
    FeatureSettings,
    ModelSettings,
    RankerSettings,
    TwoTowerSettings,
)
from app.models.features import stable_hash
from data.importers.readers import Dataset
from train.eval_inputs import build_inputs
from train.evaluate import evaluate_command, run_evaluation

FEATURES = FeatureSettings(
    user_buckets=1 << 16, item_buckets=1 << 16, creator_buckets=64, history_len=5
)


def clustered(n_users=120, n_items=60, groups=4, per_user=12, seed=0) -> Dataset:
    """Users of group g interact mostly with items of group g (popularity is uninformative)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        g = u % groups
        own = [i for i in range(n_items) if i % groups == g]
        picks = rng.choice(own, size=per_user - 2, replace=False).tolist()
        picks += rng.choice(n_items, size=2, replace=False).tolist()
        rows += [(f"u{u}", f"i{i}", u * 100 + j) for j, i in enumerate(dict.fromkeys(picks))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    inter["timestamp"] = inter["timestamp"].astype(float)
    inter["strength"], inter["part"], inter["row"] = np.nan, "", np.arange(len(inter))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    items["category"] = [f"g{i % groups}" for i in range(n_items)]
    return Dataset("toy", inter, items)


def test_pair_histories_leave_the_target_out():
    d = clustered()
    split = ratio_split(d.interactions, seed=1)
    data = Interactions.from_split(split, d.items["item_id"])
    inputs = build_inputs(data, split.train, d.items, FEATURES, seed=1)
    n_pairs = int(data.train.sum())
    assert inputs.pairs["i_hash"].shape[0] == n_pairs
    hist, target = inputs.pairs["u_hist"], inputs.pairs["i_hash"]
    assert not (hist == target[:, None]).any()
    # each pair's history is min(h, n_user - 1) of the user's other training items
    item_hash = dict(zip(data.items, stable_hash(list(data.items), 1 << 16, "item:"), strict=True))
    train_items = split.train.groupby("user_id")["item_id"].agg(set)
    u_of_hash = dict(zip(stable_hash(list(data.users), 1 << 16, "user:"), data.users, strict=True))
    for row in range(0, n_pairs, 37):
        user = u_of_hash[int(inputs.pairs["u_hash"][row])]
        owned = {item_hash[i] for i in train_items[user]}
        got = [int(x) for x in hist[row] if x > 0]
        assert len(got) == min(5, len(owned) - 1) and set(got) <= owned
    # users' own histories are the first h of their training items
    assert (
        (inputs.users["u_hist"] > 0).sum(1)
        == torch.clamp(torch.from_numpy(np.diff(data.train.indptr)), max=5)
    ).all()


def test_run_evaluation_selects_on_validation_and_beats_popularity():
    ms = ModelSettings(
        features=FEATURES,
        two_tower=TwoTowerSettings(id_dim=8, feature_dim=4, hidden=(32,), batch_size=64),
        ranker=RankerSettings(embedding_dim=8, batch_size=32, epochs=10),
        evaluation=EvaluationSettings(
            max_epochs=6, patience=2, ease_lambdas=(1.0, 10.0), ranker_fold=0.3
        ),
    )
    report = run_evaluation(clustered(), ms, log=lambda _: None)
    m = report["models"]
    assert report["protocol"]["sizes"]["train"] > 0 and report["protocol"]["split"] == "random"
    tt = m["two_tower"]
    curve = [c["ndcg@10"] for c in tt["valid_curve"]]
    assert tt["best_epoch"] == int(np.argmax(curve)) + 1
    assert tt["valid"]["ndcg@10"] == pytest.approx(max(curve))  # the kept weights are the best
    assert tt["epochs_run"] == 6 or tt["epochs_run"] - tt["best_epoch"] == 2
    assert "recall@500" in tt["test"]
    assert m["ease"]["lambda"] in (1.0, 10.0)
    # group structure: EASE and the two-tower beat popularity on the test split
    assert m["ease"]["test"]["ndcg@10"] > m["popularity"]["test"]["ndcg@10"] + 0.05
    assert m["two_tower"]["test"]["ndcg@10"] > m["popularity"]["test"]["ndcg@10"] + 0.05
    # the full pipeline: ranker epoch picked on validation, re-ranked lists beat popularity
    pipe = m["pipeline"]
    curve = [c["ndcg@10"] for c in pipe["valid_curve"]]
    assert pipe["best_epoch"] == int(np.argmax(curve)) + 1
    assert pipe["valid"]["ndcg@10"] == pytest.approx(max(curve))
    assert pipe["test"]["users"] == tt["test"]["users"] and pipe["candidates"] == 500
    assert pipe["train_s"] >= tt["train_s"] and pipe["test"]["eval_s"] > 0
    assert pipe["positives"] == "a 0.3 fold of the training split"
    assert m["pipeline"]["test"]["ndcg@10"] > m["popularity"]["test"]["ndcg@10"] + 0.05


def test_cli_json_and_given_split_error(tmp_path, monkeypatch):
    d = clustered(n_users=30, n_items=40)
    path = tmp_path / "log.csv"
    d.interactions[["user_id", "item_id", "timestamp"]].to_csv(path, index=False)
    monkeypatch.setenv("FEEDRAY_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    import typer

    app = typer.Typer()
    app.command()(evaluate_command)
    png = tmp_path / "recall.png"
    args = ["table", str(path), "--models", "popularity,ease", "--json", "--plot", str(png)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert set(report["models"]) == {"popularity", "ease"}
    assert 0 <= report["models"]["ease"]["test"]["recall@10"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["table", str(path), "--split", "given"])
    assert bad.exit_code == 1 and "pre-split" in bad.output


def test_ranker_rows_label_positives_by_strength_and_draw_negatives_from_retrieval():
    from app.models.two_tower import TwoTower, embed
    from train.eval_pipeline import candidates, ranker_rows, strong_matrix

    d = clustered(n_users=40, n_items=40)
    d.interactions["strength"] = np.arange(len(d.interactions)) % 5 + 1.0  # ratings 1..5
    d = Dataset(d.name, d.interactions, d.items, strength_kind="rating")
    split = ratio_split(d.interactions, seed=0)
    data = Interactions.from_split(split, d.items["item_id"])
    inputs = build_inputs(data, split.train, d.items, FEATURES, seed=0)
    tower = TwoTower(FEATURES, TwoTowerSettings(id_dim=8, feature_dim=4, hidden=(16,)))
    ev = EvaluationSettings(retrieval_k=10, ranker_negatives=3)
    rows = ranker_rows(tower, data, inputs, strong_matrix(data, split.train, d), ev)
    n = len(inputs.pair_users)
    assert len(rows) == 4 * n
    labels = rows.labels.numpy()
    assert (labels[:n, 0] == 1).all() and (labels[n:] == 0).all() and (labels[:, 2] == 0).all()
    # label_strong: exactly the training interactions rated >= 4 (the importer's media_liked)
    liked = split.train[split.train["strength"] >= 4]
    key = set(zip(liked["user_id"], liked["item_id"], strict=True))
    got = {
        (data.users[u], data.items[i])
        for u, i, s in zip(inputs.pair_users, inputs.pair_items, labels[:n, 1], strict=True)
        if s == 1
    }
    assert got == key
    # negatives: not the user's training items, within the user's retrieval top-10
    neg_user = inputs.pair_users[rows.pair[n:].numpy()].copy()
    neg_item = rows.item[n:].numpy().copy()
    assert data.train[neg_user, neg_item].sum() == 0
    top = candidates(
        embed(tower.user, inputs.users), embed(tower.content, inputs.items), data.train, 10
    )
    assert (top[neg_user] == neg_item[:, None]).any(axis=1).all()
    batch = rows.batch(torch.arange(0, len(rows), 7))
    assert set(batch) >= {"u_hist", "i_hash", "retrieval_score", "type_match", "label_strong"}


def test_fold_rows_take_positives_from_the_fold_and_negatives_outside_it():
    from app.models.two_tower import TwoTower
    from train.eval_pipeline import fold_rows, strong_matrix

    d = clustered(n_users=40, n_items=40)
    split = ratio_split(d.interactions, seed=0)
    data = Interactions.from_split(split, d.items["item_id"])
    cut = ratio_split(split.train, (0.7, 0.3, 0.0), seed=0)
    fold = data.recoded(cut.train, cut.valid)
    assert fold.train.sum() + fold.valid.sum() == data.train.sum() and fold.test.nnz == 0
    inputs = build_inputs(fold, cut.train, d.items, FEATURES, seed=0)
    tower = TwoTower(FEATURES, TwoTowerSettings(id_dim=8, feature_dim=4, hidden=(16,)))
    ev = EvaluationSettings(retrieval_k=10, ranker_negatives=2)
    rows = fold_rows(tower, fold, inputs, strong_matrix(data, split.train, d), ev)
    n = int(fold.valid.sum())
    assert len(rows) == 3 * n
    user, item = rows.pair.numpy().copy(), rows.item.numpy().copy()
    assert fold.valid[user[:n], item[:n]].sum() == n  # positives: exactly the fold's pairs
    assert fold.seen("test")[user[n:], item[n:]].sum() == 0  # negatives: neither part
    assert (rows.labels[:n, 0] == 1).all() and (rows.labels[n:] == 0).all()
    # the rows' user columns are the fold model's: histories from the first part only
    assert torch.equal(rows.batch(torch.tensor([0]))["u_hist"][0], inputs.users["u_hist"][user[0]])
