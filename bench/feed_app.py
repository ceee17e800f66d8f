"""A servable feed app for the HTTP benchmarks: a bootstrapped world deployed on a local Ray.

``bootstrapped`` fills a private stack (its own MLflow on SQLite in the stack's state dir)
with a simulated world made servable by ``train.bootstrap``; ``deploy_feed_app`` starts a
local 2-CPU Ray and deploys serve_config.yaml's shape on it, one replica per deployment;
``run_constant_app`` runs, beside it, a bare Serve ingress that answers a constant (Serve's
own floor).
"""

from __future__ import annotations

import atexit
import os
import shutil
import time

from app.config import FeedraySettings
from app.stack.kafka import ensure_topics
from app.stack.process import free_port


def bootstrapped(
    settings: FeedraySettings, items: int, users: int, days: float, epochs: int
) -> tuple[FeedraySettings, object, float]:
    """(settings with the private MLflow, ``train.bootstrap.Bootstrapped``, seconds taken)."""
    from data.simulate.world import WorldConfig
    from train.bootstrap import bootstrap

    ensure_topics(settings)
    uri = f"sqlite:///{settings.state_dir.resolve()}/mlflow.db"
    settings = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": uri})}
    )
    world = WorldConfig(seed=5, n_users=users, n_items=items, n_creators=max(items // 50, 1))
    t0 = time.perf_counter()
    boot = bootstrap(settings, world, days, epochs)
    return settings, boot, time.perf_counter() - t0


def deploy_feed_app(
    settings: FeedraySettings, hop_allowance_ms: float, *, transport_from_settings: bool = False
) -> tuple[dict, str, float]:
    """(the deployed Serve config, the app's base URL, seconds the deploy took).

    A fresh local Ray starts here (``num_cpus=2``, no dashboard); autoscaling is off, one
    replica each. Serve's transport (HAProxy ingress, throughput-optimised mode) is the
    caller's environment, or with ``transport_from_settings`` what ``feedray up`` starts the
    head with (``settings.ray``; HAProxy's files in the stack's ``haproxy_folder``, removed
    at exit).
    """
    import ray

    from app.stack.ray_env import haproxy_folder, haproxy_paths, serve_transport_env
    from deployments.app import settings_payload
    from deployments.deploy import deploy, load_config

    ray.shutdown()  # the Ray ``train.bootstrap`` joined for its Ray Data steps, if any
    os.environ["RAY_ADDRESS"] = "local"
    if transport_from_settings:
        folder = haproxy_folder(settings.state_dir)
        folder.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ.update(serve_transport_env(settings.ray) | haproxy_paths(folder))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    config = load_config()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["args"] = {
        "settings": settings_payload(settings),
        "serving": {"hop_allowance_ms": hop_allowance_ms, "index_rebuild_interval_s": 0},
        "gpu": "auto",
    }
    for entry in app["deployments"]:
        entry.pop("autoscaling_config", None)
        entry["num_replicas"] = 1
    t0 = time.perf_counter()
    deploy(config, wait_s=900)
    return config, f"http://127.0.0.1:{port}", time.perf_counter() - t0


def run_constant_app(name: str) -> None:
    """Run Serve app ``name``: a bare FastAPI ingress (one replica, 0.1 CPU) that answers
    ``{"ok": true}`` to ``GET /<name>/``."""
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(api)
    class Constant:
        @api.get("/")
        def constant(self) -> dict:
            return {"ok": True}

    serve.run(Constant.bind(), name=name, route_prefix=f"/{name}")
