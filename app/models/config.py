"""Model, training, index and gate settings: ``FeedraySettings.models``.

Every field has a default that suits a single machine; tests and jobs pass smaller
values explicitly. Override like any setting, e.g. ``FEEDRAY_MODELS__TRAINING__NUM_WORKERS=2``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.features.definitions import (  # defined once there; importable from here
    DEFAULT_SIGNAL_WEIGHTS,
    NEGATIVE_EVENTS,
    STRONG_EVENTS,
)
from app.schemas import EventType


class FeatureSettings(BaseModel):
    """Hash-bucket sizes and sequence lengths shared by both models (index 0 = missing)."""

    model_config = ConfigDict(frozen=True)

    user_buckets: int = Field(1 << 18, ge=16)
    item_buckets: int = Field(1 << 18, ge=16)
    creator_buckets: int = Field(1 << 16, ge=16)
    category_buckets: int = Field(1 << 10, ge=16)
    language_buckets: int = Field(1 << 8, ge=16)
    history_len: int = Field(20, ge=1)  # recent positively engaged items in the user features
    top_categories: int = Field(3, ge=1)
    user_window_days: float = Field(7.0, gt=0)  # user features look back this far
    positive_threshold: float = 0.9  # a slot whose summed signal weight reaches this is a positive


class TwoTowerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    output_dim: int = Field(64, ge=4)  # = serving.embedding_dim
    id_dim: int = Field(64, ge=4)  # = the published protocol's embedding size
    feature_dim: int = Field(16, ge=2)
    hidden: tuple[int, ...] = (128,)
    id_dropout: float = Field(0.2, ge=0.0, le=1.0)  # cold start: train without the id this often
    temperature: float = Field(0.1, gt=0)
    logq_correction: bool = True
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(512, ge=2)
    epochs: int = Field(8, ge=1)
    # width of a dense vector per item (``i_vec``, e.g. audio / visual embeddings) that the
    # content tower projects to id_dim; 0 = off. Items without one get zeros.
    item_vector_dim: int = Field(0, ge=0)


class RankerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    embedding_dim: int = Field(16, ge=2)
    dense_arch: tuple[int, ...] = (64,)  # the last size is forced to embedding_dim
    over_arch: tuple[int, ...] = (64, 32)  # a 3-logit head is appended
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(512, ge=2)
    epochs: int = Field(4, ge=1)
    # value = sum_h weight_h * P(head_h); None -> derived from events.signal_weights
    head_weights: dict[str, float] | None = None


class TrainingSettings(BaseModel):
    """Ray Train resources and where runs keep their checkpoints."""

    model_config = ConfigDict(frozen=True)

    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool | None = None  # None: when torch.cuda.is_available()
    storage_path: str | None = None  # default <state_dir>/ray_results
    training_sets: str | None = None  # default <state_dir>/training_sets
    eval_days: float = Field(1.0, gt=0)  # the last days of events are held out for evaluation
    seed: int = 0


class IndexSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    exact_below: int = Field(200_000, ge=1)  # catalogues smaller than this get IndexFlatIP
    nlist: int | None = None  # None: about 2 * sqrt(n), a power of two, clamped to [64, 16384]
    kind: str = "auto"  # auto | flat | ivf_flat | ivf_pq | hnsw
    pq_m: int = Field(16, ge=1)  # IVF-PQ sub-quantizers (then exact refinement)
    refine_factor: int = Field(4, ge=1)
    hnsw_m: int = Field(32, ge=4)
    target_recall: float = Field(0.95, gt=0, le=1)  # nprobe / efSearch tuned to reach this
    recall_k: int = Field(500, ge=1)
    recall_queries: int = Field(200, ge=1)
    # a rebuild in serving tunes on the replica's last recall_queries user vectors once it
    # has seen this many (app.serving.served_queries), else on near-data item queries
    min_served_queries: int = Field(50, ge=1)
    train_sample: int = Field(200_000, ge=1000)


class GateSettings(BaseModel):
    """A new version becomes ``challenger`` only if its gate metric is within tolerance."""

    model_config = ConfigDict(frozen=True)

    retrieval_metric: str = "recall@100"
    ranking_metric: str = "auc_completed"
    tolerance: float = Field(0.01, ge=0)  # absolute drop allowed vs the champion
    bootstrap_champion: bool = True  # the first version of a model becomes champion


class EvaluationSettings(BaseModel):
    """Offline evaluation on interaction datasets (``feedray evaluate``): protocol and selection."""

    model_config = ConfigDict(frozen=True)

    split: str = "random"  # random (per-user ratio) | time (per-user time order) | given
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    ks: tuple[int, ...] = (10, 20, 50)
    retrieval_k: int = Field(500, ge=1)  # the retrieval stage's recall@K (the ranker's ceiling)
    select_metric: str = "ndcg@10"  # on the validation split only
    max_epochs: int | None = 30  # two-tower epoch cap (early stopping); None: two_tower.epochs
    patience: int = Field(3, ge=1)  # epochs without a better validation metric before stopping
    ease_lambdas: tuple[float, ...] = (50.0, 200.0, 500.0, 1000.0)  # picked on validation
    # full pipeline: ranker negatives per training positive, drawn from the retrieval top-K
    ranker_negatives: int = Field(4, ge=1)
    # share of each user's training items held out as the ranker's positives, scored by a
    # two-tower trained without them (0: the ranker's positives are all training pairs)
    ranker_fold: float = Field(0.0, ge=0.0, lt=1.0)
    # full pipeline: weights w of the retrieval score in the final order
    # (1 - w) z(ranker value) + w z(two-tower cosine), picked on validation with the epoch
    ranker_blend: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)


class ModelSettings(BaseModel):
    """``FeedraySettings.models``: names in the MLflow registry and every model hyper-parameter."""

    model_config = ConfigDict(frozen=True)

    retrieval_model_name: str = "feedray-two-tower"
    ranking_model_name: str = "feedray-ranker"
    experiment: str = "feedray"
    features: FeatureSettings = FeatureSettings()
    two_tower: TwoTowerSettings = TwoTowerSettings()
    ranker: RankerSettings = RankerSettings()
    training: TrainingSettings = TrainingSettings()
    index: IndexSettings = IndexSettings()
    gate: GateSettings = GateSettings()
    evaluation: EvaluationSettings = EvaluationSettings()


def resolve_model_settings(settings: object | None = None) -> ModelSettings:
    """``settings.models`` (defaults when ``settings`` is None)."""
    found = getattr(settings, "models", None)
    return found if isinstance(found, ModelSettings) else ModelSettings()


def default_head_weights(signal_weights: dict | None = None) -> dict[str, float]:
    """Head weights of the value score from the event signal weights.

    completion -> weight of media_completed; strong -> mean weight of the strong events;
    negative -> mean weight of skip / dislike / early pause (negative numbers).
    """
    w = {str(k): float(v) for k, v in (signal_weights or DEFAULT_SIGNAL_WEIGHTS).items()}
    return {
        "completed": w[str(EventType.MEDIA_COMPLETED)],
        "strong": sum(w[str(e)] for e in STRONG_EVENTS) / len(STRONG_EVENTS),
        "negative": sum(w[str(e)] for e in NEGATIVE_EVENTS) / len(NEGATIVE_EVENTS),
    }
