"""One typed configuration for the whole platform.

Sources, highest priority first: keyword arguments, environment variables
(prefix ``FEEDRAY_``, nested fields joined by ``__``, e.g.
``FEEDRAY_REDIS__PORT=6390``), a YAML file (``FEEDRAY_CONFIG_FILE``, else
``feedray.yaml`` in the working directory when present), then the defaults
below, which suit a single machine on loopback.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from app.bench_settings import BenchSettings
from app.clock import ClockSettings
from app.demo_settings import DemoSettings
from app.experiments.settings import ExperimentSettings
from app.features import definitions as d
from app.features.definitions import DEFAULT_SIGNAL_WEIGHTS
from app.models.config import ModelSettings
from app.retraining import PipelineSettings
from app.schemas import EventType
from app.stack.settings import AudienceSettings, StackSettings

DEFAULT_CONFIG_FILE = "feedray.yaml"


class RedisSettings(BaseModel):
    """Where the online feature store lives."""

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    username: str | None = None
    password: SecretStr | None = None
    socket_timeout_s: float = Field(1.0, gt=0)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis``."""
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else None,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TopicSettings(BaseModel):
    """Kafka topic names and partition counts."""

    engagement: str = "user.engagement.events"
    published: str = "media.published"
    dead_letter: str = "user.engagement.events.dlq"
    exposures: str = "feed.exposures"
    engagement_partitions: int = Field(4, ge=1)
    published_partitions: int = Field(1, ge=1)
    dead_letter_partitions: int = Field(1, ge=1)
    exposures_partitions: int = Field(2, ge=1)

    def partitions(self) -> dict[str, int]:
        """Topic name -> partition count, for every topic the platform uses."""
        return {
            self.engagement: self.engagement_partitions,
            self.published: self.published_partitions,
            self.dead_letter: self.dead_letter_partitions,
            self.exposures: self.exposures_partitions,
        }


class KafkaSettings(BaseModel):
    """The Kafka broker (a single KRaft node locally) and its clients."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    heap: str = "768m"
    distribution_dir: Path = Path(".feedray/dist/kafka")
    topics: TopicSettings = TopicSettings()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uses_sasl(self) -> bool:
        return bool(self.sasl_username and self.sasl_password)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration shared by every producer, consumer and admin client."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.uses_sasl:
            assert self.sasl_password is not None
            config |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.get_secret_value(),
            }
        return config | overrides


class RaySettings(BaseModel):
    """The local Ray head. Its GCS port differs from Redis' default 6379 on purpose."""

    host: str = "127.0.0.1"
    port: int = Field(6380, ge=1, le=65535)
    dashboard_port: int = Field(8265, ge=1, le=65535)
    # The head's dashboard agent serves job submission; Ray's default port is shared by every
    # Ray instance on the machine, and an agent that cannot bind it refuses all jobs.
    dashboard_agent_port: int = Field(52365, ge=1, le=65535)
    # Where the head's metrics agent serves every Ray process's metrics (the feedray_* serving
    # metrics among them) in Prometheus' text format; Prometheus scrapes it.
    metrics_export_port: int = Field(8090, ge=1, le=65535)
    num_cpus: int | None = None
    auth_mode: Literal["token", "disabled"] = "token"  # Ray's token authentication (RAY_AUTH_MODE)
    # Serve's transport, set in the environment of every node's `ray start` (Ray reads it at
    # start): the HAProxy ingress, straight to the ingress replicas (RAY_SERVE_ENABLE_HA_PROXY),
    # and direct gRPC between replicas (RAY_SERVE_THROUGHPUT_OPTIMIZED). Measured against
    # Serve's Python proxy in bench/results/hot_path.json.
    serve_haproxy: bool = True
    serve_throughput_optimized: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"


class PrometheusSettings(BaseModel):
    """Debian's Prometheus scraping the Ray head's metrics export (``ray.metrics_export_port``):
    started by ``feedray up`` when ``enabled``, data under ``data/prometheus``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9090, ge=1, le=65535)
    scrape_interval_s: float = Field(5.0, gt=0)
    retention: str = "7d"  # --storage.tsdb.retention.time

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class MlflowSettings(BaseModel):
    """MLflow tracking server; local SQLite backend unless ``tracking_uri`` says otherwise."""

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    tracking_uri: str | None = None

    @property
    def url(self) -> str:
        return self.tracking_uri or f"http://{self.host}:{self.port}"


class EventSettings(BaseModel):
    """The seed's ten engagement events and the label weight each one carries."""

    signal_weights: dict[EventType, float] = Field(
        default_factory=lambda: dict(DEFAULT_SIGNAL_WEIGHTS)
    )
    max_message_bytes: int = Field(16_384, gt=0)

    @field_validator("signal_weights", mode="before")
    @classmethod
    def _overrides_merge_onto_defaults(cls, weights: Any) -> Any:
        """Overriding one weight (``FEEDRAY_EVENTS__SIGNAL_WEIGHTS__MEDIA_LIKED=0.9``) keeps the
        rest."""
        if isinstance(weights, dict):
            return {str(k): v for k, v in DEFAULT_SIGNAL_WEIGHTS.items()} | {
                str(k): v for k, v in weights.items()
            }
        return weights


class LatencySettings(BaseModel):
    """Per-stage budgets of a feed request in milliseconds (the seed's numbers).

    A stage over its budget is counted (``feedray_over_budget_total{stage}``); the request is
    still served. Retrieval and ranking are also waited for at most their budget plus
    ``serving_runtime.hop_allowance_ms`` before the feed falls back.
    """

    features_ms: float = Field(5.0, gt=0)
    retrieval_ms: float = Field(10.0, gt=0)
    ranking_ms: float = Field(80.0, gt=0)
    total_ms: float = Field(150.0, gt=0)


class ServingSettings(BaseModel):
    """The feed service: assembly defaults, stage timeouts, caches and index upkeep."""

    candidate_count: int = Field(500, ge=1)
    default_limit: int = Field(20, ge=1, le=100)
    diversity_default: float = Field(0.2, ge=0.0, le=1.0)
    max_items_per_creator: int = Field(2, ge=1)
    embedding_dim: int = Field(64, ge=4)
    # Before an ingress replica reports ready it sends one warm-up request through retrieval
    # and ranking (their replicas warm their own models, index and Redis client on load); it
    # waits at most this long for them, then starts anyway and says so in its warm-up report.
    warmup_timeout_s: float = Field(300.0, gt=0)
    # A Ray Serve hop costs ~10-15 ms p50 on a 2-core host, more than the 10 ms retrieval
    # budget itself. The ingress therefore waits budget + hop_allowance_ms for a stage before
    # it falls back; the stage's own compute is still compared to its budget and reported
    # (``over_budget`` metric) without failing the request.
    hop_allowance_ms: float = Field(60.0, ge=0)
    # Last-known user features kept per ingress replica (used while Redis is unreachable).
    feature_cache_size: int = Field(50_000, ge=1)
    feature_cache_ttl_s: float = Field(3_600.0, gt=0)
    # Trending lists cached per replica (read on every fallback and every cold start).
    trending_cache_ttl_s: float = Field(30.0, gt=0)
    trending_fetch: int = Field(200, ge=1)
    # Live index: how often each retrieval replica fully rebuilds its index (0 = never).
    index_rebuild_interval_s: float = Field(900.0, ge=0)
    # Live index: how the retrieval replica consumes media.published.
    published_poll_s: float = Field(0.2, gt=0)
    # Retrieval searches both content types at once; a type with fewer candidates than this
    # in the top-N gets a search of its own (the re-rank's diversity draws on it).
    min_candidates_per_type: int = Field(100, ge=0)
    # Cold start: share of the feed drawn from trending (the rest from the context tower).
    cold_start_trending_share: float = Field(0.5, ge=0.0, le=1.0)
    # Exposure producer: librdkafka local queue bound (drops, never blocks, beyond it).
    exposure_queue_messages: int = Field(100_000, ge=1)
    # Hot path CPU: Serve's own batching (``@serve.batch``) of retrieval and ranking calls
    # arriving together at a replica: one user-tower forward + one FAISS search, one DLRM
    # forward, per batch. ``batch_wait_ms`` 0 adds no wait: a batch is whatever queued while
    # the previous one ran (so batches grow with load only). batch_max_size x candidate_count
    # <= 4,000 keeps a batch's counter read on the online store's one-round-trip path.
    batch_max_size: int = Field(8, ge=1)
    batch_wait_ms: float = Field(0.0, ge=0)
    # Intra-op threads of torch and FAISS in each stage replica (process-wide). A replica holds
    # a fraction of a core on small hosts; more threads than its share only contend.
    torch_threads: int = Field(1, ge=1)
    faiss_threads: int = Field(1, ge=1)


class IngestSettings(BaseModel):
    """Offline ingestion knobs. ``FeedraySettings.ingest``."""

    root: str | None = None  # default <state_dir>/offline/events; any pyarrow fs URI
    catalogue: str | None = None  # default <state_dir>/offline/catalogue
    max_records_per_window: int | None = Field(2_000_000, ge=1)  # cap on one window, all partitions
    read_timeout_s: float | None = Field(
        300.0, gt=0
    )  # per read task; partial reads commit the prefix
    interval_s: float = Field(300.0, gt=0)  # schedule period for `feedray ingest` without --once
    compression: str = "zstd"
    consumer_group: str = "feedray-offline-ingest"  # only a client label: nothing is committed
    history_windows: int = Field(50, ge=0)  # window records kept in the progress manifest
    # CPUs each read and stage task reserves. Fractional, so that a window is scheduled beside
    # the Serve replicas: with a canary running, serve_config.yaml's replicas hold 1.25 of a
    # 2-CPU head, and a 1-CPU task (Ray Data's default) would wait for a whole free CPU forever.
    task_cpus: float = Field(0.25, gt=0)
    # Topics `feedray ingest` lands: engagement events (``root``) and the exposure log
    # (``exposures_root``, default <state_dir>/offline/exposures).
    topics: tuple[Literal["engagement", "exposures"], ...] = ("engagement", "exposures")
    exposures_root: str | None = None


class OnlineStoreSettings(BaseModel):
    """Online store knobs (``FeedraySettings.online_store``): the one section the collector
    writes with and serving, trending and the catalogue read with."""

    prefix: str = "fr"
    session_ttl_s: int = Field(2 * d.DAY_S, gt=0)
    user_ttl_s: int = Field(
        8 * d.DAY_S, gt=0
    )  # idle users' windowed state expires (all zero by then)
    active_ttl_s: int = Field(3 * d.HOUR_S, gt=0)


class CollectorSettings(BaseModel):
    """Collector knobs (``FeedraySettings.collector``)."""

    group_id: str = "feedray-collector"
    batch_size: int = Field(5_000, ge=1)
    poll_timeout_s: float = Field(0.2, gt=0)
    session_timeout_ms: int = Field(6_000, ge=6_000)  # the broker's group.min.session.timeout.ms
    progress_every_s: float = Field(5.0, gt=0)
    retry_initial_s: float = Field(0.05, gt=0)
    retry_max_s: float = Field(2.0, gt=0)
    actor_num_cpus: float = Field(0.5, ge=0)
    meta_cache_size: int = Field(1_000_000, ge=0)
    # A 5,000-event apply script can take longer than settings.redis.socket_timeout_s on a busy
    # host; a timed-out call that did run is detected on retry by its offsets (skipped, not
    # doubled).
    redis_socket_timeout_s: float = Field(10.0, gt=0)


class CatalogueSettings(BaseModel):
    """Catalogue consumer knobs (``FeedraySettings.catalogue``)."""

    group_id: str = "feedray-catalogue"
    root: str | None = None  # default <state_dir>/offline/catalogue
    batch_size: int = Field(2_000, ge=1)
    poll_timeout_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(2.0, gt=0)


class TrendingSettings(BaseModel):
    """Trending lists: refresh period and list sizes.

    Live lists never expire: each stays until a refresh replaces it with a non-empty list.
    ``temp_ttl_s`` only bounds the temporary keys a refresh builds (so a refresher killed
    mid-write leaves nothing behind). ``newest_list_length`` items per content type are kept,
    newest first, by every catalogue upsert: the last fallback when trending is empty.
    """

    refresh_interval_s: float = Field(900.0, gt=0)
    max_list_length: int = Field(1_000, ge=1)  # items kept per list
    read_chunk: int = Field(5_000, ge=1)
    temp_ttl_s: float = Field(600.0, gt=0)
    newest_list_length: int = Field(1_000, ge=1)


class ServingRedisSettings(BaseModel):
    """Redis on the request path (features, trending, item counters), per replica.

    Every call has a connect and a read timeout that fit inside the request's budgets and is
    never retried (redis-py's default retries with backoff would stall a request for
    seconds while Redis is down). One circuit breaker per replica opens after
    ``breaker_failures`` consecutive failures; while open, requests answer at once from the
    replica's last-known data or defaults, and after ``breaker_retry_after_s`` one probe
    call decides whether it closes again.
    """

    connect_timeout_s: float = Field(0.02, gt=0)
    read_timeout_s: float = Field(0.05, gt=0)
    breaker_failures: int = Field(3, ge=1)
    breaker_retry_after_s: float = Field(2.0, ge=0)


class FeedraySettings(BaseSettings):
    """The platform's configuration: every address, topic, weight and budget."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDRAY_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    state_dir: Path = Path(".feedray")
    redis: RedisSettings = RedisSettings()
    kafka: KafkaSettings = KafkaSettings()
    ray: RaySettings = RaySettings()
    mlflow: MlflowSettings = MlflowSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    events: EventSettings = EventSettings()
    latency: LatencySettings = LatencySettings()
    serving: ServingSettings = ServingSettings()
    serving_redis: ServingRedisSettings = ServingRedisSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    trending: TrendingSettings = TrendingSettings()
    models: ModelSettings = ModelSettings()
    ingest: IngestSettings = IngestSettings()
    online_store: OnlineStoreSettings = OnlineStoreSettings()
    collector: CollectorSettings = CollectorSettings()
    catalogue: CatalogueSettings = CatalogueSettings()
    stack: StackSettings = StackSettings()
    audience: AudienceSettings = AudienceSettings()
    demo: DemoSettings = DemoSettings()
    bench: BenchSettings = BenchSettings()
    clock: ClockSettings = ClockSettings()
    pipeline: PipelineSettings = PipelineSettings()

    @model_validator(mode="after")
    def _ports_distinct(self) -> FeedraySettings:
        ports = {
            "redis.port": self.redis.port,
            "kafka.port": self.kafka.port,
            "kafka.controller_port": self.kafka.controller_port,
            "ray.port": self.ray.port,
            "ray.dashboard_port": self.ray.dashboard_port,
            "ray.dashboard_agent_port": self.ray.dashboard_agent_port,
            "ray.metrics_export_port": self.ray.metrics_export_port,
            "mlflow.port": self.mlflow.port,
            "prometheus.port": self.prometheus.port,
        }
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} both use port {port}")
            seen[port] = name
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("FEEDRAY_CONFIG_FILE", DEFAULT_CONFIG_FILE)
        if "FEEDRAY_CONFIG_FILE" in os.environ and not Path(yaml_file).is_file():
            raise FileNotFoundError(f"FEEDRAY_CONFIG_FILE={yaml_file} does not exist")
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
            file_secret_settings,
        )


@lru_cache(maxsize=1)
def get_settings() -> FeedraySettings:
    """The process-wide settings, read once."""
    return FeedraySettings()
