"""The local servers of the stack: Redis, the Kafka broker (KRaft), a Ray head, MLflow, and
Prometheus when ``prometheus.enabled``."""

from __future__ import annotations

from app.config import FeedraySettings
from app.stack.component import Component, StackPaths
from app.stack.kafka import KafkaBroker
from app.stack.mlflow_server import MlflowServer
from app.stack.prometheus import PrometheusServer
from app.stack.ray_head import RayHead
from app.stack.redis_server import RedisServer


def all_components(settings: FeedraySettings) -> list[Component]:
    paths = StackPaths.from_settings(settings)
    classes: list[type[Component]] = [RedisServer, KafkaBroker, RayHead, MlflowServer]
    if settings.prometheus.enabled:
        classes.append(PrometheusServer)
    return [cls(settings, paths) for cls in classes]
