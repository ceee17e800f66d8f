"""The simulated world: users, creators and items as column arrays, deterministic by seed.

Everything the platform later learns (tastes, styles, popularity) is drawn here
once, so tests and benchmarks can compare models against a known ground truth.
Arrays are column-oriented (no per-entity objects) and generated in chunks, so a
world of 1M users and 3M items stays in a few hundred MB.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas import ContentType, PreferredContentType

DAY_MS = 86_400_000

# Integer codes used in the arrays; the wire enums are looked up by code.
CONTENT_TYPES: tuple[ContentType, ...] = (ContentType.VIDEO, ContentType.AUDIO)
PREFERRED_TYPES: tuple[PreferredContentType, ...] = (
    PreferredContentType.VIDEO,
    PreferredContentType.AUDIO,
    PreferredContentType.MIXED,
)
VIDEO, AUDIO = 0, 1
MIXED = 2

CATEGORY_NAMES: tuple[str, ...] = (
    "music", "podcasts", "news", "sports", "gaming", "comedy", "education", "science",
    "technology", "cooking", "travel", "fashion", "beauty", "fitness", "health", "finance",
    "kids", "animation", "film", "documentary", "history", "nature", "cars", "diy",
)  # fmt: skip


class AffinityWeights(BaseModel):
    """Weights of the true affinity logit (see ``data.simulate.affinity``)."""

    model_config = ConfigDict(frozen=True)

    bias: float = -3.0
    taste: float = 4.0  # times dot(user_taste, item_latent), both roughly unit norm
    language_match: float = 1.5
    content_type_match: float = 1.0
    popularity: float = 0.4  # times the item's standardised log popularity


class WorldConfig(BaseModel):
    """Sizes, shares and shapes of the world; ``seed`` makes it reproducible."""

    model_config = ConfigDict(frozen=True)

    seed: int = Field(0, ge=0)
    n_users: int = Field(10_000, ge=1)
    n_items: int = Field(50_000, ge=1)
    n_creators: int = Field(2_000, ge=1)
    n_categories: int = Field(24, ge=1, le=len(CATEGORY_NAMES))
    languages: tuple[str, ...] = ("en", "es", "fr", "de", "pt", "hi", "ja")
    language_shares: tuple[float, ...] = (0.42, 0.16, 0.09, 0.08, 0.09, 0.10, 0.06)
    latent_dim: int = Field(16, ge=2, le=256)
    audio_share: float = Field(0.35, ge=0.0, le=1.0)
    preferred_type_shares: tuple[float, float, float] = (0.45, 0.20, 0.35)  # VIDEO, AUDIO, MIXED
    n_age_bands: int = Field(4, ge=1, le=127)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    backlog_days: float = Field(365.0, gt=0)  # catalogue published before ``start``
    new_item_share: float = Field(0.05, ge=0.0, le=1.0)  # published after ``start`` ...
    new_item_days: float = Field(30.0, gt=0)  # ... uniformly over this many days
    popularity_alpha: float = Field(1.3, gt=0.1)  # Pareto tail index of item popularity
    sessions_per_day: float = Field(2.5, gt=0)  # population mean
    session_items: float = Field(8.0, ge=1)  # population mean items per session
    affinity: AffinityWeights = AffinityWeights()
    chunk_rows: int = Field(1_000_000, ge=1_000)  # generation chunk, bounds temporaries

    @model_validator(mode="after")
    def _shares(self) -> WorldConfig:
        if len(self.language_shares) != len(self.languages):
            raise ValueError("language_shares must have one share per language")
        if len(self.languages) > 127:
            raise ValueError("at most 127 languages (int8 codes)")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        return self

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)


def _shares(values: tuple[float, ...]) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    return p / p.sum()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32 [n, d])."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-6)).astype(np.float32)


@dataclass(eq=False)
class World:
    """Column arrays of one world; index ``i`` of a user/item/creator array is entity ``i``.

    Latent vectors are float16 and roughly unit norm; popularity is a positive
    Pareto weight, ``item_pop_z`` its standardised log (what affinity uses).
    """

    config: WorldConfig
    category_centroids: np.ndarray  # float32 [n_categories, d], unit rows
    # users
    user_taste: np.ndarray  # float16 [n_users, d]
    user_language: np.ndarray  # int8 [n_users], index into config.languages
    user_preferred_type: np.ndarray  # int8 [n_users], 0 VIDEO / 1 AUDIO / 2 MIXED
    user_age_band: np.ndarray  # int8 [n_users], 0..n_age_bands-1 (bias audits)
    user_session_rate: np.ndarray  # float32 [n_users], sessions per day
    user_session_items: np.ndarray  # float32 [n_users], mean items per session
    # creators
    creator_style: np.ndarray  # float16 [n_creators, d]
    creator_language: np.ndarray  # int8 [n_creators]
    creator_category: np.ndarray  # int16 [n_creators], main category
    creator_subscribers: np.ndarray  # int32 [n_creators], subscriber base
    # items
    item_creator: np.ndarray  # int32 [n_items]
    item_category: np.ndarray  # int16 [n_items]
    item_language: np.ndarray  # int8 [n_items]
    item_content_type: np.ndarray  # int8 [n_items], 0 VIDEO / 1 AUDIO
    item_duration_s: np.ndarray  # float32 [n_items]
    item_publish_ms: np.ndarray  # int64 [n_items], ms since epoch
    item_popularity: np.ndarray  # float32 [n_items], Pareto weight >= 1
    item_pop_z: np.ndarray  # float16 [n_items], standardised log popularity
    item_latent: np.ndarray  # float16 [n_items, d]

    @property
    def n_users(self) -> int:
        return int(self.user_taste.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_latent.shape[0])

    @property
    def n_creators(self) -> int:
        return int(self.creator_style.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the world by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    @classmethod
    def generate(cls, config: WorldConfig) -> World:
        """Draw a world from ``config``; the same config always gives identical arrays."""
        return generate_world(config)


def world_memory_bytes(world: World) -> int:
    """Bytes held by the world's arrays (sum of ``nbytes``)."""
    return int(sum(a.nbytes for a in world.arrays().values()))


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent PCG64 stream per (seed, purpose)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


def _chunks(n: int, size: int):
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def _creators(config: WorldConfig, centroids: np.ndarray) -> dict[str, np.ndarray]:
    rng = _rng(config.seed, 1)
    c, d = config.n_creators, config.latent_dim
    category = rng.integers(0, config.n_categories, c).astype(np.int16)
    style = _unit_rows(centroids[category] + 0.8 * rng.standard_normal((c, d)) / np.sqrt(d))
    language = rng.choice(len(config.languages), c, p=_shares(config.language_shares))
    # Subscriber base: lognormal, a few big creators.
    subscribers = np.minimum(rng.lognormal(7.0, 2.0, c), 2e9).astype(np.int32)
    return {
        "creator_style": style.astype(np.float16),
        "creator_language": language.astype(np.int8),
        "creator_category": category,
        "creator_subscribers": subscribers,
    }


def _durations(rng: np.random.Generator, content_type: np.ndarray) -> np.ndarray:
    """Seconds: video lognormal around 5 min; audio a music (3.5 min) / podcast (45 min) mix."""
    n = content_type.shape[0]
    video = rng.lognormal(np.log(300.0), 0.9, n)
    music = rng.lognormal(np.log(210.0), 0.35, n)
    podcast = rng.lognormal(np.log(2_700.0), 0.6, n)
    audio = np.where(rng.random(n) < 0.6, music, podcast)
    seconds = np.where(content_type == AUDIO, audio, video)
    return np.clip(seconds, 10.0, 6 * 3_600.0).astype(np.float32)


def _items_chunk(
    config: WorldConfig,
    rng: np.random.Generator,
    n: int,
    centroids: np.ndarray,
    creators: dict[str, np.ndarray],
    creator_weight: np.ndarray,
) -> dict[str, np.ndarray]:
    d = config.latent_dim
    creator = np.searchsorted(creator_weight, rng.random(n) * creator_weight[-1], side="right")
    creator = np.minimum(creator, config.n_creators - 1).astype(np.int32)
    # Mostly the creator's main category and language.
    category = np.where(
        rng.random(n) < 0.8,
        creators["creator_category"][creator],
        rng.integers(0, config.n_categories, n),
    ).astype(np.int16)
    language = np.where(
        rng.random(n) < 0.9,
        creators["creator_language"][creator],
        rng.choice(len(config.languages), n, p=_shares(config.language_shares)),
    ).astype(np.int8)
    content_type = (rng.random(n) < config.audio_share).astype(np.int8)
    latent = (
        0.7 * centroids[category]
        + 0.5 * creators["creator_style"][creator].astype(np.float32)
        + 0.5 * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    )
    new = rng.random(n) < config.new_item_share
    offset_days = np.where(
        new,
        rng.random(n) * config.new_item_days,
        -rng.random(n) * config.backlog_days,
    )
    publish_ms = config.start_ms + np.floor(offset_days * DAY_MS).astype(np.int64)
    # Heavy tail: Pareto item weight times a mild creator factor.
    creator_factor = np.log10(10.0 + creators["creator_subscribers"][creator].astype(np.float64))
    popularity = (rng.pareto(config.popularity_alpha, n) + 1.0) * creator_factor
    return {
        "item_creator": creator,
        "item_category": category,
        "item_language": language,
        "item_content_type": content_type,
        "item_duration_s": _durations(rng, content_type),
        "item_publish_ms": publish_ms,
        "item_popularity": popularity.astype(np.float32),
        "item_latent": _unit_rows(latent).astype(np.float16),
    }


def _users_chunk(
    config: WorldConfig, rng: np.random.Generator, n: int, centroids: np.ndarray
) -> dict[str, np.ndarray]:
    d, k = config.latent_dim, config.n_categories
    # Taste: a favourite category, a second one, and personal noise.
    first = rng.integers(0, k, n)
    second = rng.integers(0, k, n)
    taste = (
        centroids[first]
        + 0.5 * centroids[second]
        + 0.6 * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    )
    return {
        "user_taste": _unit_rows(taste).astype(np.float16),
        "user_language": rng.choice(
            len(config.languages), n, p=_shares(config.language_shares)
        ).astype(np.int8),
        "user_preferred_type": rng.choice(3, n, p=_shares(config.preferred_type_shares)).astype(
            np.int8
        ),
        "user_age_band": rng.choice(
            config.n_age_bands, n, p=_shares(tuple(1.0 + 0.5 * np.arange(config.n_age_bands)[::-1]))
        ).astype(np.int8),
        # Gamma rates: mean sessions_per_day, a long tail of heavy users.
        "user_session_rate": rng.gamma(1.5, config.sessions_per_day / 1.5, n).astype(np.float32),
        "user_session_items": (1.0 + rng.gamma(2.0, (config.session_items - 1.0) / 2.0, n)).astype(
            np.float32
        ),
    }


def _fill(out: dict[str, np.ndarray], chunk: dict[str, np.ndarray], lo: int) -> None:
    """Copy one generated chunk into the preallocated columns at row ``lo``."""
    for name, values in chunk.items():
        out[name][lo : lo + values.shape[0]] = values


def generate_world(config: WorldConfig) -> World:
    """Generate a :class:`World` chunk by chunk (``config.chunk_rows`` rows at a time)."""
    d = config.latent_dim
    centroids = _unit_rows(_rng(config.seed, 0).standard_normal((config.n_categories, d)))
    creators = _creators(config, centroids)
    creator_weight = np.cumsum(np.sqrt(creators["creator_subscribers"].astype(np.float64) + 1.0))

    item_dtypes = {
        "item_creator": (np.int32, ()),
        "item_category": (np.int16, ()),
        "item_language": (np.int8, ()),
        "item_content_type": (np.int8, ()),
        "item_duration_s": (np.float32, ()),
        "item_publish_ms": (np.int64, ()),
        "item_popularity": (np.float32, ()),
        "item_latent": (np.float16, (d,)),
    }
    items = {k: np.empty((config.n_items, *s), dtype=t) for k, (t, s) in item_dtypes.items()}
    rng = _rng(config.seed, 2)
    for lo, hi in _chunks(config.n_items, config.chunk_rows):
        _fill(items, _items_chunk(config, rng, hi - lo, centroids, creators, creator_weight), lo)

    user_dtypes = {
        "user_taste": (np.float16, (d,)),
        "user_language": (np.int8, ()),
        "user_preferred_type": (np.int8, ()),
        "user_age_band": (np.int8, ()),
        "user_session_rate": (np.float32, ()),
        "user_session_items": (np.float32, ()),
    }
    users = {k: np.empty((config.n_users, *s), dtype=t) for k, (t, s) in user_dtypes.items()}
    rng = _rng(config.seed, 3)
    for lo, hi in _chunks(config.n_users, config.chunk_rows):
        _fill(users, _users_chunk(config, rng, hi - lo, centroids), lo)

    log_pop = np.log(items["item_popularity"])
    pop_z = ((log_pop - log_pop.mean()) / max(float(log_pop.std()), 1e-6)).astype(np.float16)
    return World(
        config=config,
        category_centroids=centroids,
        item_pop_z=pop_z,
        **creators,
        **items,
        **users,
    )


# --- wire identifiers -------------------------------------------------------------------------


def user_id(index: int) -> str:
    return f"u{index}"


def item_id(index: int) -> str:
    return f"m{index}"


def creator_id(index: int) -> str:
    return f"c{index}"


def parse_index(identifier: str) -> int:
    """``"u42"`` / ``"m42"`` / ``"c42"`` -> 42."""
    return int(identifier[1:])
