"""Two-tower retrieval model: a user tower and a content tower into one L2-normalised space.

Score(user, item) = <u, v> with u, v unit vectors of ``output_dim`` (= serving.embedding_dim).
Trained on positive engagements with in-batch negatives and logQ correction (Yi et al.,
"Sampling-bias-corrected neural modeling", RecSys 2019): for a batch of B positive pairs

    logits[i, j] = <u_i, v_j> / temperature - log q_j        [B, B]
    loss = cross_entropy(logits, arange(B))  (weighted per row)

where q_j is item j's probability of appearing as a positive in a batch (its share of
training positives). Without the correction popular items, which are sampled as negatives
more often, would be over-penalised. Pairs where j is the same item as i (duplicates in a
batch) are masked so an item is never its own negative.

Cold start: ids are hashed into zero-initialised tables and dropped (zeroed) with
probability ``id_dropout`` during training, so each tower also learns to embed from
features alone; a new item (no trained id row) gets a useful embedding from its category,
creator, type, language, duration and stats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.models.config import FeatureSettings, TwoTowerSettings
from app.models.encoders import FeatureEmbedding, IdEmbedding, masked_mean, mlp
from app.models.features import DURATION_BUCKETS, ITEM_DENSE, USER_DENSE


class UserTower(nn.Module):
    """User features -> unit vector [B, output_dim].

    Inputs: u_hash [B], u_hist [B, H] (item hashes, 0 = padding), u_cats [B, C]
    (category hashes), u_lang [B], u_pref [B], u_dense [B, USER_DENSE].
    """

    def __init__(
        self,
        f: FeatureSettings,
        m: TwoTowerSettings,
        history: nn.Embedding,
        categories: nn.Embedding,
        languages: nn.Embedding,
    ) -> None:
        super().__init__()
        self.id_dropout = m.id_dropout
        self.user_id = IdEmbedding(f.user_buckets, m.id_dim)
        self.history = history  # shared with the content tower's item ids
        self.categories = categories  # shared
        self.languages = languages  # shared
        self.preferred = FeatureEmbedding(4, m.feature_dim)
        in_dim = m.id_dim * 2 + m.feature_dim * 3 + USER_DENSE
        self.net = mlp(in_dim, m.hidden, m.output_dim)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        hist = masked_mean(self.history(b["u_hist"]), b["u_hist"])  # [B, id_dim]
        cats = masked_mean(self.categories(b["u_cats"]), b["u_cats"])  # [B, feature_dim]
        x = torch.cat(
            [
                self.user_id(b["u_hash"], self.id_dropout),
                hist,
                cats,
                self.languages(b["u_lang"]),
                self.preferred(b["u_pref"]),
                b["u_dense"],
            ],
            dim=1,
        )
        return F.normalize(self.net(x), dim=1)


class ContentTower(nn.Module):
    """Item features -> unit vector [B, output_dim].

    Inputs: i_hash [B], i_cat [B], i_creator [B], i_type [B], i_lang [B], i_dur [B],
    i_dense [B, ITEM_DENSE]. ``content_type`` is an input, so one model serves video and audio.
    With ``item_vector_dim`` > 0 also i_vec [B, item_vector_dim] (a pre-computed content
    vector, linearly projected to id_dim; zeros when the batch has none), so an item with
    no interactions yet embeds from its content.
    """

    def __init__(
        self,
        f: FeatureSettings,
        m: TwoTowerSettings,
        item_ids: IdEmbedding,
        categories: nn.Embedding,
        languages: nn.Embedding,
    ) -> None:
        super().__init__()
        self.id_dropout = m.id_dropout
        self.item_id = item_ids
        self.categories = categories
        self.languages = languages
        self.creator = FeatureEmbedding(f.creator_buckets, m.id_dim)
        self.content_type = FeatureEmbedding(3, m.feature_dim)
        self.duration = FeatureEmbedding(DURATION_BUCKETS, m.feature_dim)
        self.vector_dim = m.item_vector_dim
        self.vector = nn.Linear(m.item_vector_dim, m.id_dim) if m.item_vector_dim else None
        in_dim = m.id_dim * (3 if self.vector else 2) + m.feature_dim * 4 + ITEM_DENSE
        self.net = mlp(in_dim, m.hidden, m.output_dim)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [
            self.item_id(b["i_hash"], self.id_dropout),
            self.creator(b["i_creator"]),
            self.categories(b["i_cat"]),
            self.content_type(b["i_type"]),
            self.languages(b["i_lang"]),
            self.duration(b["i_dur"]),
            b["i_dense"],
        ]
        if self.vector is not None:
            vec = b.get("i_vec")
            if vec is None:
                vec = b["i_dense"].new_zeros(b["i_dense"].shape[0], self.vector_dim)
            elif vec.shape[-1] != self.vector_dim:
                raise ValueError(f"i_vec has width {vec.shape[-1]}, expected {self.vector_dim}")
            parts.append(self.vector(vec))
        return F.normalize(self.net(torch.cat(parts, dim=1)), dim=1)


class TwoTower(nn.Module):
    """Both towers; ``forward`` returns (user [B, D], item [B, D]) unit embeddings."""

    kind = "two_tower"

    def __init__(self, features: FeatureSettings, settings: TwoTowerSettings) -> None:
        super().__init__()
        self.features = features
        self.settings = settings
        item_ids = IdEmbedding(features.item_buckets, settings.id_dim)
        categories = FeatureEmbedding(features.category_buckets, settings.feature_dim)
        languages = FeatureEmbedding(features.language_buckets, settings.feature_dim)
        self.content = ContentTower(features, settings, item_ids, categories, languages)
        self.user = UserTower(features, settings, item_ids, categories, languages)

    def forward(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user(b), self.content(b)

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "features": self.features.model_dump(mode="json"),
            "settings": self.settings.model_dump(mode="json"),
        }

    @classmethod
    def from_config(cls, config: dict) -> TwoTower:
        return cls(FeatureSettings(**config["features"]), TwoTowerSettings(**config["settings"]))


def in_batch_loss(
    user: torch.Tensor,
    item: torch.Tensor,
    item_ids: torch.Tensor,
    temperature: float,
    log_q: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled-softmax loss with in-batch negatives and optional logQ correction.

    user, item: [B, D] unit vectors of B positive pairs; item_ids: [B] (to mask duplicates);
    log_q: [B] log sampling probability of each item; weight: [B] per-pair weight. Scalar.
    """
    logits = user @ item.T / temperature  # [B, B]
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)  # [B, B]
    eye = torch.eye(same.shape[0], dtype=torch.bool, device=same.device)
    logits = logits.masked_fill(same & ~eye, torch.finfo(logits.dtype).min / 2)
    labels = torch.arange(user.shape[0], device=user.device)
    loss = F.cross_entropy(logits, labels, reduction="none")  # [B]
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp_min(1e-6)


def train_step(
    model: TwoTower, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> float:
    """One optimisation step on a batch of positive pairs; returns the loss."""
    core = model.module if hasattr(model, "module") else model
    s = core.settings
    model.train()
    user, item = model(batch)
    log_q = batch.get("log_q") if s.logq_correction else None
    loss = in_batch_loss(user, item, batch["i_hash"], s.temperature, log_q, batch.get("weight"))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def embed(
    tower: nn.Module, columns: dict[str, torch.Tensor], batch_size: int = 65_536
) -> torch.Tensor:
    """Run ``tower`` (user or content) in eval mode over column tensors: float32 [n, D]."""
    tower.eval()
    n = next(iter(columns.values())).shape[0]
    parts = []
    for lo in range(0, n, batch_size):
        parts.append(tower({k: v[lo : lo + batch_size] for k, v in columns.items()}))
    return torch.cat(parts) if parts else torch.empty(0)
