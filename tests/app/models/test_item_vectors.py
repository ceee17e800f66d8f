"""Dense item vectors in the content tower: cold items embed from their content vector."""

import pytest
import torch

from app.models.config import FeatureSettings, TwoTowerSettings
from app.models.optim import SplitAdam
from app.models.two_tower import TwoTower, embed, train_step

F = FeatureSettings(user_buckets=512, item_buckets=512, creator_buckets=64, history_len=4)
GROUPS, N_ITEMS, WARM, N_USERS = 4, 80, 60, 64


def _items(vec_dim: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    group = torch.arange(N_ITEMS) % GROUPS
    vec = torch.nn.functional.one_hot(group, vec_dim).float() + 0.1 * torch.randn(
        N_ITEMS, vec_dim, generator=g
    )
    ones = torch.ones(N_ITEMS, dtype=torch.int64)
    return {
        "i_hash": torch.arange(1, N_ITEMS + 1),
        "i_cat": ones,  # the same category, creator, type, ...: only the vector tells groups apart
        "i_creator": ones,
        "i_type": ones,
        "i_lang": ones,
        "i_dur": ones,
        "i_dense": torch.zeros(N_ITEMS, 5),
        "i_vec": vec,
    }


def _users() -> dict[str, torch.Tensor]:
    group = torch.arange(N_USERS) % GROUPS
    hist = torch.stack([group + GROUPS * k + 1 for k in range(4)], dim=1)  # warm items of the group
    return {
        "u_hash": torch.arange(1, N_USERS + 1),
        "u_hist": hist,
        "u_cats": torch.zeros(N_USERS, 3, dtype=torch.int64),
        "u_lang": torch.ones(N_USERS, dtype=torch.int64),
        "u_pref": torch.ones(N_USERS, dtype=torch.int64),
        "u_dense": torch.zeros(N_USERS, 4),
    }


def _cold_precision(vec_dim: int) -> float:
    """Share of each user's top-5 cold items (never trained on) that are of its group."""
    torch.manual_seed(0)
    s = TwoTowerSettings(
        output_dim=16,
        id_dim=8,
        feature_dim=4,
        hidden=(32,),
        id_dropout=0.5,
        batch_size=64,
        item_vector_dim=vec_dim,
    )
    model = TwoTower(F, s)
    opt = SplitAdam(model, lr=1e-2)
    items, users = _items(8), _users()
    if not vec_dim:
        items.pop("i_vec")
    g = torch.Generator().manual_seed(1)
    for _ in range(150):  # pairs: a user and a warm item of its group
        u = torch.randint(0, N_USERS, (64,), generator=g)
        i = (u % GROUPS) + GROUPS * torch.randint(0, WARM // GROUPS, (64,), generator=g)
        batch = {k: v[u] for k, v in users.items()} | {k: v[i] for k, v in items.items()}
        train_step(model, batch, opt)
    cold = {k: v[WARM:] for k, v in items.items()}
    scores = embed(model.user, users) @ embed(model.content, cold).T
    top = scores.topk(5, dim=1).indices + WARM
    return float(((top % GROUPS) == (torch.arange(N_USERS) % GROUPS)[:, None]).float().mean())


def test_cold_items_are_found_through_their_vector():
    assert _cold_precision(8) > 0.9
    assert _cold_precision(0) < 0.5  # without the vector cold items are indistinguishable


def test_vector_width_is_checked_and_missing_vectors_are_zeros():
    model = TwoTower(F, TwoTowerSettings(output_dim=16, item_vector_dim=8))
    items = _items(8)
    no_vec = {k: v for k, v in items.items() if k != "i_vec"}
    zero = items | {"i_vec": torch.zeros(N_ITEMS, 8)}
    assert torch.allclose(embed(model.content, no_vec), embed(model.content, zero))
    with pytest.raises(ValueError, match="width 3"):
        embed(model.content, items | {"i_vec": torch.zeros(N_ITEMS, 3)})
