"""Deploying the Serve config, updating user_config in place, and the ``feedray serve`` command.

Updates go through the same declarative path as ``serve deploy``: when only a
deployment's ``user_config`` changes, Serve reconfigures its running replicas in place
(``reconfigure``), with no restart and no dropped requests. (``serve.run`` from Python
would instead roll out new replicas: Serve 2.60 gives code deployed that way a fresh
random code version on every call.)
"""

from __future__ import annotations

import copy
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

APP_NAME = "feedray"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def deployment(config: dict[str, Any], name: str, app: str = APP_NAME) -> dict[str, Any]:
    for application in config["applications"]:
        if application["name"] == app:
            for entry in application["deployments"]:
                if entry["name"] == name:
                    return entry
    raise KeyError(f"no deployment {name!r} in application {app!r}")


def with_user_config(config: dict[str, Any], name: str, **updates: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``updates`` merged into deployment ``name``'s user_config."""
    config = copy.deepcopy(config)
    entry = deployment(config, name)
    entry["user_config"] = {**(entry.get("user_config") or {}), **updates}
    return config


STAGE_DEPLOYMENTS = {  # deployment -> its block in the Ingress's user_config under stages: local
    "Retrieval": "retrieval",
    "Ranking": "ranking",
    "CanaryRetrieval": "canary_retrieval",
    "CanaryRanking": "canary_ranking",
}


def with_stages(config: dict[str, Any], stages: str, app: str = APP_NAME) -> dict[str, Any]:
    """``config`` with retrieval and ranking placed ``remote`` (own deployments) or ``local``.

    Local: their deployment entries are removed and their ``user_config`` moves into the
    Ingress's as ``retrieval: {...}`` / ``ranking: {...}`` (the inverse for remote).
    """
    config = copy.deepcopy(config)
    application = next(a for a in config["applications"] if a["name"] == app)
    application.setdefault("args", {})["stages"] = stages
    entries = {e["name"]: e for e in application["deployments"]}
    ingress = entries["Ingress"]
    ingress_config = ingress.setdefault("user_config", {})
    if stages == "local":
        for name, block in STAGE_DEPLOYMENTS.items():
            if name in entries:
                ingress_config[block] = entries.pop(name).get("user_config") or {}
    else:
        for name, block in STAGE_DEPLOYMENTS.items():
            if block in ingress_config and name not in entries:
                entries[name] = {"name": name, "user_config": ingress_config.pop(block)}
    application["deployments"] = list(entries.values())
    return config


def _model_blocks(config: dict[str, Any]) -> list[tuple[str, dict]]:
    """(stage deployment name, its user_config) wherever the stage lives in ``config``."""
    out = []
    for name, block in STAGE_DEPLOYMENTS.items():
        try:
            out.append((name, deployment(config, name).setdefault("user_config", {})))
        except KeyError:
            ingress = deployment(config, "Ingress").get("user_config") or {}
            if block in ingress:
                out.append((name, ingress[block]))
    return out


def resolve_aliases(config: dict[str, Any], settings: Any | None = None) -> dict[str, Any]:
    """Turn ``alias:<name>`` model references into concrete versions (from MLflow).

    Replicas only reconfigure when their user_config changes; an alias moving in MLflow
    does not change the config text, so promotion and rollback run this and redeploy.
    A canary alias that does not exist yet resolves to the champion's version.
    """
    from app.config import get_settings
    from app.serving.model_refs import resolve_arms

    settings = settings or get_settings()
    config = copy.deepcopy(config)
    retrieval, ranking = settings.models.retrieval_model_name, settings.models.ranking_model_name
    models_of = {
        "Retrieval": retrieval,
        "Ranking": ranking,
        "CanaryRetrieval": retrieval,
        "CanaryRanking": ranking,
    }
    for name, user_config in _model_blocks(config):
        model = models_of[name]
        refs = user_config.get("models") or {}
        if any(str(ref).startswith("alias:") for ref in refs.values()):
            refs.update(
                {
                    arm: f"{model}@{version}"
                    for arm, version in resolve_arms(refs, model, settings).items()
                }
            )
    return config


def with_local_settings(config: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Fill an app's empty ``args.settings`` with this process' non-default settings.

    Replicas build ``FeedraySettings`` from what the config carries, and their working
    directory is not this one: the state directory is made absolute so they find the same
    MLflow store and catalogue. Secrets are left out (replicas read them from their own
    ``FEEDRAY_*`` environment).
    """
    config = copy.deepcopy(config)
    overrides = settings.model_dump(mode="json", exclude_defaults=True)
    overrides.get("redis", {}).pop("password", None)
    overrides.get("kafka", {}).pop("sasl_password", None)
    overrides["state_dir"] = str(Path(settings.state_dir).expanduser().resolve())
    for application in config["applications"]:
        args = application.setdefault("args", {})
        if not args.get("settings"):
            args["settings"] = overrides
    return config


def deploy(config: dict[str, Any], wait_s: float | None = 300.0) -> None:
    """Apply the config to the running Serve instance (starting Serve if needed)."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    serve.start(
        http_options=config.get("http_options") or {}, proxy_location=config.get("proxy_location")
    )
    schema = ServeDeploySchema.model_validate(config)
    _get_global_client().deploy_apps(schema)
    if wait_s:
        wait_running(wait_s)


def wait_running(timeout_s: float = 300.0, app: str = APP_NAME) -> None:
    """Until the app is RUNNING and no deployment is still updating its replicas."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if status is not None and str(status.status) in ("RUNNING", "ApplicationStatus.RUNNING"):
            if all(str(d.status).endswith("HEALTHY") for d in status.deployments.values()):
                return
        if status is not None and "DEPLOY_FAILED" in str(status.status):
            raise RuntimeError(f"{app} failed to deploy: {status.message}")
        time.sleep(0.5)
    raise TimeoutError(f"{app} not running after {timeout_s:.0f}s: {status}")


def connect_cluster(settings: Any, address: str | None = None) -> None:
    """Join the running Ray cluster (``address``, ``RAY_ADDRESS`` or the `feedray up` head);
    SystemExit when there is none: Serve must outlive the command, so it never starts a
    throw-away local Ray."""
    import os

    import ray

    from app.ray_runtime import connect_ray
    from app.stack.process import port_open

    if ray.is_initialized():
        return
    if address:
        os.environ["RAY_ADDRESS"] = address
    elif "RAY_ADDRESS" not in os.environ and not port_open(settings.ray.host, settings.ray.port):
        raise SystemExit(
            f"no Ray cluster at {settings.ray.address}; run `feedray up` or pass --address"
        )
    connect_ray(settings, log_to_driver=False)


class Placement(StrEnum):
    remote = "remote"
    local = "local"


def serve_command(
    config: Annotated[Path, typer.Option(help="The Serve config to deploy.")] = DEFAULT_CONFIG,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: the `feedray up` head).")
    ] = None,
    refresh_models: Annotated[
        bool,
        typer.Option(
            help="Resolve MLflow aliases (alias:champion, ...) to versions first: how a promotion "
            "or rollback reaches running replicas, in place."
        ),
    ] = True,
    wait_s: Annotated[
        float, typer.Option(help="Seconds to wait for the application to be RUNNING.")
    ] = 300.0,
    host: Annotated[
        str, typer.Option(help="HTTP proxy bind address (the config's 0.0.0.0 is for clusters).")
    ] = "127.0.0.1",
    stages: Annotated[
        Placement | None,
        typer.Option(
            help="Where retrieval and ranking run: own deployments (remote) or inside the ingress "
            "(local). Default: the config's args.stages."
        ),
    ] = None,
) -> None:
    """Deploy the feed service, or update it in place, on a running Ray cluster.

    Never starts a Ray of its own (Serve must outlive the command): run `feedray up` first or
    pass --address. Serve's transport is the cluster's, fixed when Ray started: `feedray up`
    starts it with the HAProxy ingress and direct gRPC between replicas (ray.serve_haproxy /
    ray.serve_throughput_optimized); --host is where the ingress listens. Replicas whose
    user_config is unchanged keep running; a changed model version is applied by reconfigure,
    without a restart.
    """
    from app.config import get_settings

    settings = get_settings()
    connect_cluster(settings, address)
    spec = with_local_settings(load_config(config), settings)
    spec.setdefault("http_options", {})["host"] = host
    if stages:
        spec = with_stages(spec, Placement(stages).value)
    if refresh_models:
        spec = resolve_aliases(spec, settings)
    deploy(spec, wait_s)
    http = spec.get("http_options") or {}
    print(
        f"feedray serving on http://{host}:{http.get('port', 8000)}/api/v1/content/feed "
        "(docs: /docs)"
    )
