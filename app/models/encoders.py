"""Small building blocks shared by the towers and the ranker."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear -> ReLU blocks over ``hidden`` sizes, then a final Linear to ``out_dim``."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class IdEmbedding(nn.Embedding):
    """Hashed-id embedding, zero-initialised, row 0 = missing id (always zero).

    Zero initialisation is the cold-start trick that pairs with id dropout: a row that
    training never touched (an item or user published after training) stays exactly zero,
    which is the same input the towers learn to handle when the id is dropped. Hash
    collisions with trained ids are the only leak; keep ``buckets`` >> live ids. Sparse
    gradients (``app.models.optim.SplitAdam`` updates the rows a batch used).
    """

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__(buckets, dim, padding_idx=0, sparse=True)
        nn.init.zeros_(self.weight)

    def forward(self, ids: torch.Tensor, drop: float = 0.0) -> torch.Tensor:
        out = super().forward(ids)
        if self.training and drop > 0:
            keep = (torch.rand(ids.shape[0], device=ids.device) >= drop).to(out.dtype)
            out = out * keep.view(-1, *([1] * (out.dim() - 1)))
        return out


class FeatureEmbedding(nn.Embedding):
    """Categorical feature embedding (normal init), row 0 = missing; sparse gradients."""

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__(buckets, dim, padding_idx=0, sparse=True)
        nn.init.normal_(self.weight, std=0.05)
        with torch.no_grad():
            self.weight[0].zero_()


def masked_mean(emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean of ``emb`` [B, L, D] over positions whose ``ids`` [B, L] are non-zero: [B, D]."""
    mask = (ids > 0).to(emb.dtype).unsqueeze(-1)
    return (emb * mask).sum(1) / mask.sum(1).clamp_min(1.0)
