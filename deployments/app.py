"""The bind graph: Ingress(FastAPI) -> Retrieval, Ranking, CanaryRetrieval, CanaryRanking
[-> FeatureLookup, opt-in].

The canary's stages are the same classes bound under their own names, always in the graph
(so starting a canary never changes the Ingress's constructor and never restarts it), at 0
replicas while no canary runs (``min_replicas: 0``); ``feedray canary start`` raises their
``min_replicas`` and sizes their ``max_replicas`` for the share, in place
(``deployments/canary.py``).

``stages: local`` binds the Ingress alone, with retrieval and ranking inside its replicas
(deployments/stages.py); their ``user_config`` blocks then sit in the Ingress's.

``build_app`` for Python callers and tests; ``app_builder`` is the import path
``serve deploy serve_config.yaml`` uses (``deployments.app:app_builder``), taking the
config's ``args``::

    args:
      settings: {redis: {port: 6379}, kafka: {...}}  # FeedraySettings overrides (else env/yaml)
      serving: {hop_allowance_ms: 60}                 # laid over settings.serving (ServingSettings)
      features_hop: false                             # FeatureLookup as its own deployment
      gpu: auto                # retrieval/ranking num_gpus: auto | true | false
      stages: remote           # remote (own deployments) | local (in the ingress)
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from app.config import FeedraySettings
from deployments.feature_lookup import FeatureLookupDeployment
from deployments.ingress import Ingress
from deployments.ranking import Ranking
from deployments.retrieval import Retrieval

APP_NAME = "feedray"
CANARY_MODELS = {"models": {"canary": "alias:challenger"}}
# No canary running: no replica (a request would start one: it then serves the champion).
CANARY_IDLE = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}


def settings_payload(settings: FeedraySettings) -> dict[str, Any]:
    """Settings as plain JSON for replica constructors (secrets revealed: pass via env in prod)."""
    data = settings.model_dump(mode="json")
    if settings.redis.password:
        data["redis"]["password"] = settings.redis.password.get_secret_value()
    if settings.kafka.sasl_password:
        data["kafka"]["sasl_password"] = settings.kafka.sasl_password.get_secret_value()
    return data


def _gpus(gpu: str | bool) -> float:
    if gpu in (True, "true", "1"):
        return 1.0
    if gpu in (False, "false", "0"):
        return 0.0
    try:
        import ray

        return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    except Exception:  # noqa: BLE001
        return 0.0


def build_app(
    settings: FeedraySettings | None = None,
    *,
    retrieval_config: dict | None = None,
    ranking_config: dict | None = None,
    ingress_config: dict | None = None,
    features_hop: bool = False,
    gpu: str | bool = "auto",
    stages: str = "remote",
) -> Application:
    if stages not in ("remote", "local"):
        raise ValueError(f"stages must be 'remote' or 'local', not {stages!r}")
    settings = settings or FeedraySettings()
    payload = settings_payload(settings)
    gpus = _gpus(gpu)
    lookup = FeatureLookupDeployment.bind(settings=payload) if features_hop else None
    ingress_options: dict[str, Any] = {}
    if ingress_config:
        ingress_options["user_config"] = ingress_config
    if stages == "local":
        ingress_options["ray_actor_options"] = {"num_cpus": 0.5, "num_gpus": gpus}
        return Ingress.options(**ingress_options).bind(
            settings=payload, feature_lookup=lookup, stages="local"
        )

    retrieval = Retrieval.options(
        ray_actor_options={"num_cpus": 0.25, "num_gpus": gpus * 0.5},
        **({"user_config": retrieval_config} if retrieval_config else {}),
    ).bind(settings=payload)
    ranking = Ranking.options(
        ray_actor_options={"num_cpus": 0.25, "num_gpus": gpus * 0.5},
        **({"user_config": ranking_config} if ranking_config else {}),
    ).bind(settings=payload)
    canary = {
        name: cls.options(
            name=name,
            ray_actor_options={"num_cpus": 0.25, "num_gpus": gpus * 0.25},
            autoscaling_config={**CANARY_IDLE, "target_ongoing_requests": target},
            user_config=CANARY_MODELS,
        ).bind(settings=payload)
        for name, cls, target in (("CanaryRetrieval", Retrieval, 4), ("CanaryRanking", Ranking, 2))
    }
    return Ingress.options(**ingress_options).bind(
        settings=payload,
        retrieval=retrieval,
        ranking=ranking,
        feature_lookup=lookup,
        canary_retrieval=canary["CanaryRetrieval"],
        canary_ranking=canary["CanaryRanking"],
    )


BUILDER_ARGS = frozenset({"settings", "serving", "features_hop", "gpu", "stages"})


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point for ``serve deploy`` / ``serve run deployments.app:app_builder``."""
    args = dict(args or {})
    unknown = sorted(set(args) - BUILDER_ARGS)
    if unknown:
        raise ValueError(f"unknown application args {unknown}; expected {sorted(BUILDER_ARGS)}")
    overrides = dict(args.get("settings") or {})
    if args.get("serving"):
        overrides["serving"] = {**(overrides.get("serving") or {}), **args["serving"]}
    return build_app(
        FeedraySettings(**overrides),
        features_hop=bool(args.get("features_hop", False)),
        gpu=args.get("gpu", "auto"),
        stages=str(args.get("stages", "remote")),
    )
