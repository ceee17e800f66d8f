"""SplitAdam: row-sparse table updates for both models, a dense Adam for the rest."""

import math

import pytest
import torch

from app.models import ranker as rk
from app.models import two_tower as tt
from app.models.config import RankerSettings, TwoTowerSettings
from app.models.optim import SplitAdam, sparse_tables
from tests.app.models.test_models import F, _batch


def test_two_tower_step_updates_only_the_rows_the_batch_used():
    torch.manual_seed(0)
    model = tt.TwoTower(F, TwoTowerSettings(id_dropout=0.0))
    with torch.no_grad():
        model.content.item_id.weight.normal_(std=0.1)
        model.content.item_id.weight[0].zero_()
    before = model.content.item_id.weight.detach().clone()
    mlp_before = model.user.net[0].weight.detach().clone()
    opt = SplitAdam(model, lr=1e-2)
    batch = _batch()
    tt.train_step(model, batch, opt)
    after = model.content.item_id.weight.detach()
    used = torch.unique(torch.cat([batch["i_hash"], batch["u_hist"].reshape(-1)]))
    changed = torch.nonzero((after != before).any(dim=1)).ravel()
    assert set(changed.tolist()) <= set(used.tolist()) and len(changed) > 0
    assert not torch.equal(model.user.net[0].weight, mlp_before)  # the MLP moved too
    # dense Adam refuses the tables' sparse gradients (what SplitAdam is for)
    with pytest.raises(RuntimeError, match="sparse"):
        tt.train_step(model, batch, torch.optim.Adam(model.parameters()))


def test_ranker_tables_are_sparse_and_state_round_trips():
    model = rk.Ranker(F, RankerSettings())
    tables = sparse_tables(model)
    assert len(tables) == 6  # every EmbeddingBagCollection table
    opt = SplitAdam(model, lr=1e-2, weight_decay=1e-4)
    loss = rk.train_step(model, _batch(), opt)
    assert math.isfinite(loss)
    again = SplitAdam(model, lr=1e-2)
    again.load_state_dict(opt.state_dict())
    assert [len(o.state) for o in again.optimizers] == [len(o.state) for o in opt.optimizers]
    assert {g["lr"] for g in again.param_groups} == {1e-2}
