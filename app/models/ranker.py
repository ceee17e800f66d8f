"""Multi-head ranking model: TorchRec ``EmbeddingBagCollection`` + ``KeyedJaggedTensor`` into DLRM.

Sparse features (one ``KeyedJaggedTensor``; tables shared where the ids are the same kind):

    user_id                     -> t_user
    item_id, recent_items       -> t_item      (recent_items is a jagged bag, mean pooled)
    creator                     -> t_creator
    category, top_categories    -> t_category
    item_language, user_language-> t_language
    content_type, preferred_type-> t_type

Dense features [B, RANKER_DENSE]: the user's online features (USER_DENSE), the content
features (ITEM_DENSE), the retrieval score (two-tower cosine) and whether the item's type
matches the user's preferred type.

Heads (DLRM over-arch ends in 3 logits): P(completed), P(strong positive: like, share,
playlist add, replay, subscription), P(negative: skip, dislike, early pause). The value
score that orders a feed is ``sum_h head_weights[h] * P(h)`` (weights from config, by
default derived from ``events.signal_weights``). The tables have sparse gradients: train
with ``app.models.optim.SplitAdam``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.models.dlrm import DLRM
from torchrec.modules.embedding_configs import PoolingType

from app.models.config import FeatureSettings, RankerSettings, default_head_weights
from app.models.features import ITEM_DENSE, USER_DENSE

HEADS = ("completed", "strong", "negative")
LABELS = tuple(f"label_{h}" for h in HEADS)
RANKER_DENSE = USER_DENSE + ITEM_DENSE + 2
# KJT key -> (batch column, multi-valued)
SPARSE_FEATURES: dict[str, tuple[str, bool]] = {
    "user_id": ("u_hash", False),
    "item_id": ("i_hash", False),
    "recent_items": ("u_hist", True),
    "creator": ("i_creator", False),
    "category": ("i_cat", False),
    "top_categories": ("u_cats", True),
    "item_language": ("i_lang", False),
    "user_language": ("u_lang", False),
    "content_type": ("i_type", False),
    "preferred_type": ("u_pref", False),
}


def _tables(f: FeatureSettings, dim: int) -> list[EmbeddingBagConfig]:
    def table(name: str, rows: int, feats: list[str]) -> EmbeddingBagConfig:
        return EmbeddingBagConfig(
            name=name,
            embedding_dim=dim,
            num_embeddings=rows,
            feature_names=feats,
            pooling=PoolingType.MEAN,
        )

    return [
        table("t_user", f.user_buckets, ["user_id"]),
        table("t_item", f.item_buckets, ["item_id", "recent_items"]),
        table("t_creator", f.creator_buckets, ["creator"]),
        table("t_category", f.category_buckets, ["category", "top_categories"]),
        table("t_language", f.language_buckets, ["item_language", "user_language"]),
        table("t_type", 4, ["content_type", "preferred_type"]),
    ]


def sparse_input(b: dict[str, torch.Tensor]) -> KeyedJaggedTensor:
    """The batch's id columns as one KeyedJaggedTensor (padding zeros of bags dropped)."""
    values, lengths = [], []
    for column, multi in SPARSE_FEATURES.values():
        ids = b[column]
        if multi:
            mask = ids > 0
            values.append(ids[mask])  # row-major: row by row, in order
            lengths.append(mask.sum(1))
        else:
            values.append(ids.reshape(-1))
            lengths.append(torch.ones_like(ids.reshape(-1)))
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(SPARSE_FEATURES),
        values=torch.cat(values),
        lengths=torch.cat(lengths).to(torch.int32),
    )


def dense_input(b: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, RANKER_DENSE] float32: user dense, item dense, retrieval score, type match."""
    n = b["u_dense"].shape[0]
    zeros = torch.zeros(n, device=b["u_dense"].device)
    score = b.get("retrieval_score", zeros).reshape(n, 1)
    match = b.get("type_match", zeros).reshape(n, 1)
    return torch.cat([b["u_dense"], b["i_dense"], score, match], dim=1).float()


class Ranker(nn.Module):
    """DLRM with three heads. ``forward(batch)`` -> logits [B, 3] (HEADS order)."""

    kind = "ranker"

    def __init__(
        self,
        features: FeatureSettings,
        settings: RankerSettings,
        head_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.settings = settings
        self.head_weights = dict(head_weights or settings.head_weights or default_head_weights())
        dim = settings.embedding_dim
        ebc = EmbeddingBagCollection(tables=_tables(features, dim), device=torch.device("cpu"))
        for bag in ebc.embedding_bags.values():
            bag.sparse = True  # row-sparse gradients, for app.models.optim.SplitAdam
        self.dlrm = DLRM(
            embedding_bag_collection=ebc,
            dense_in_features=RANKER_DENSE,
            dense_arch_layer_sizes=[*settings.dense_arch, dim],
            over_arch_layer_sizes=[*settings.over_arch, len(HEADS)],
        )

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.dlrm(dense_features=dense_input(b), sparse_features=sparse_input(b))

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        """Value score [B] = sum_h weight_h * sigmoid(logit_h)."""
        w = torch.tensor([self.head_weights[h] for h in HEADS], device=logits.device)
        return torch.sigmoid(logits) @ w

    @torch.no_grad()
    def score(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eval-mode probabilities per head [B] and the value score [B]."""
        self.eval()
        logits = self(b)
        out = {h: torch.sigmoid(logits[:, i]) for i, h in enumerate(HEADS)}
        out["value"] = self.value(logits)
        return out

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "features": self.features.model_dump(mode="json"),
            "settings": self.settings.model_dump(mode="json"),
            "head_weights": self.head_weights,
        }

    @classmethod
    def from_config(cls, config: dict) -> Ranker:
        return cls(
            FeatureSettings(**config["features"]),
            RankerSettings(**config["settings"]),
            config.get("head_weights"),
        )


def multi_head_loss(logits: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the three heads' binary cross-entropies (logits [B, 3], labels [B] each)."""
    labels = torch.stack([b[name] for name in LABELS], dim=1).float()
    return F.binary_cross_entropy_with_logits(logits, labels)


def train_step(
    model: nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> float:
    model.train()
    loss = multi_head_loss(model(batch), batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def blend_retrieval(value: np.ndarray, retrieval: np.ndarray, weight: float) -> np.ndarray:
    """Final order of a candidate list: ``(1 - weight) * z(value) + weight * z(retrieval)``.

    ``value`` and ``retrieval`` are [b, k]: the ranker's value score and the two-tower
    cosine of each user's k candidates; z standardises each row (mean 0, std 1, a constant
    row becomes 0), so the two scales mix. ``weight`` 0 is the ranker's order, 1 the
    retrieval order.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")

    def z(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        sd = x.std(axis=1, keepdims=True)
        return (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)

    return (1.0 - weight) * z(value) + weight * z(retrieval)
