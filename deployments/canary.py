"""Canary operations on the running Serve app: start, status, promote, rollback.

Each operation reads the config Serve last deployed (the controller's
``deployed_app_config``, what ``serve config`` prints), changes user_config and autoscaling
fields only, and redeploys it declaratively (``deploy.deploy``): Serve applies such changes
to running replicas in place (``reconfigure``), so nothing restarts and no request fails.

* ``start``: ``challenger`` alias on both registered models; the canary's stages load the
  canary versions (``CanaryRetrieval`` / ``CanaryRanking`` scaled from 0 to at least one
  replica, at most ``canary_max_replicas``; under ``stages: local`` the ingress's canary
  cores) and report ready; only then do the share, experiment and start time reach the
  Ingress.
* ``promote``: ``champion`` alias -> the canary's versions; the champion's stages load them
  in place; then share 0, the canary's replicas back to 0 and ``challenger`` removed.
* ``rollback``: share 0 first (the canary's users go back to the champion), then the
  canary's replicas to 0 and ``challenger`` removed; the champion is untouched.

Every outcome is tagged on the challenger's MLflow versions (``canary_outcome``), as the
guardrail's abort is (``canary_abort``, by the ingress).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from app.experiments.canary import CanaryVersions, canary_max_replicas
from deployments.deploy import APP_NAME, STAGE_DEPLOYMENTS, deploy, deployment

CANARY_STAGES = {"CanaryRetrieval": "retrieval", "CanaryRanking": "ranking"}
CHAMPION_STAGES = {"Retrieval": "retrieval", "Ranking": "ranking"}
OUTCOME_TAG = "canary_outcome"


def live_config() -> dict[str, Any]:
    """The config Serve last deployed, as a ``ServeDeploySchema`` dict."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    apps = [
        app.deployed_app_config.model_dump(exclude_unset=True)
        for app in details.applications.values()
        if app.deployed_app_config is not None
    ]
    if not apps:
        raise RuntimeError("no Serve application is deployed: run `feedray serve` first")
    config: dict[str, Any] = {"applications": apps}
    if details.proxy_location is not None:
        config["proxy_location"] = str(details.proxy_location.value)
    if details.http_options is not None:
        config["http_options"] = details.http_options.model_dump(exclude_unset=True)
    return config


def _application(config: dict, app: str = APP_NAME) -> dict:
    return next(a for a in config["applications"] if a["name"] == app)


def is_local(config: dict) -> bool:
    return (_application(config).get("args") or {}).get("stages") == "local"


def stage_config(config: dict, name: str) -> dict:
    """A stage's user_config (created empty), wherever it lives: its own deployment entry, or
    its block in the Ingress's user_config under ``stages: local``."""
    if is_local(config):
        ingress = deployment(config, "Ingress").setdefault("user_config", {})
        return ingress.setdefault(STAGE_DEPLOYMENTS[name], {})
    try:
        return deployment(config, name).setdefault("user_config", {})
    except KeyError:
        entry: dict[str, Any] = {"name": name}
        _application(config)["deployments"].append(entry)
        return entry.setdefault("user_config", {})


def ingress_config(config: dict) -> dict:
    return deployment(config, "Ingress").setdefault("user_config", {})


def with_canary_stages(
    config: dict, refs: dict[str, str], running: bool, max_replicas: int = 1
) -> dict:
    """``config`` with the canary's stages serving ``refs`` (stage -> ``name@version``), scaled
    to at least one replica (``running``) or to none. Local stages only take the models (their
    cores follow the share)."""
    config = copy.deepcopy(config)
    for name, ref in refs.items():
        stage_config(config, name)["models"] = {"canary": ref}
    if not is_local(config):
        for name in CANARY_STAGES:
            stage_config(config, name)  # creates the entry when the config had none
            entry = deployment(config, name)
            floor = 1 if running else 0
            entry.pop("num_replicas", None)
            entry["autoscaling_config"] = {
                **(entry.get("autoscaling_config") or {}),
                "min_replicas": floor,
                "initial_replicas": floor,
                "max_replicas": max(max_replicas, 1),
            }
    return config


def with_champion(config: dict, refs: dict[str, str]) -> dict:
    """``config`` with the champion's stages serving ``refs`` (stage -> ``name@version``)."""
    config = copy.deepcopy(config)
    for name, ref in refs.items():
        stage_config(config, name)["models"] = {"champion": ref}
    return config


def with_share(
    config: dict, share: float, experiment: str | None = None, started_at: str | None = None
) -> dict:
    """``config`` with the Ingress's canary share (and, when given, experiment and run start)."""
    config = copy.deepcopy(config)
    user_config = ingress_config(config)
    user_config["canary_share"] = float(share)
    if experiment is not None:
        user_config["experiment"] = experiment
    if started_at is not None:
        user_config["canary_started_at"] = started_at
    return config


def champion_max_replicas(config: dict, name: str) -> int:
    if is_local(config):
        return 1
    entry = deployment(config, name)
    scaling = entry.get("autoscaling_config") or {}
    return int(scaling.get("max_replicas") or entry.get("num_replicas") or 1)


class ServeCanary:
    """``app.experiments.canary.CanaryOps`` on the running Serve app (Ray connected)."""

    def __init__(self, settings: Any, wait_s: float = 300.0, app: str = APP_NAME) -> None:
        from app import registry
        from app.clock import clock_from_settings
        from app.experiments.canary_store import CanaryStore

        self.settings = settings
        self.wait_s = wait_s
        self.app = app
        self.clock = clock_from_settings(settings)
        self.uri = registry.tracking_uri(settings)
        self.store = CanaryStore.from_settings(settings)
        ms = settings.models
        self.models = {"retrieval": ms.retrieval_model_name, "ranking": ms.ranking_model_name}

    # ---------------------------------------------------------------- reading
    def _deploy(self, config: dict) -> dict:
        deploy(config, self.wait_s)
        return config

    def _version(self, stage: str, ref: str | None) -> str | None:
        from app.serving.model_refs import resolve_model_ref

        if not ref:
            return None
        try:
            return resolve_model_ref(ref, self.models[stage], self.settings)
        except LookupError:
            return None

    def versions_of(self, config: dict, stages: dict[str, str], arm: str) -> dict[str, str | None]:
        """Stage kind (retrieval / ranking) -> the version ``arm``'s stages are configured with."""
        default = "alias:champion" if arm == "champion" else None
        out = {}
        for name, stage in stages.items():
            ref = (stage_config(copy.deepcopy(config), name).get("models") or {}).get(arm, default)
            out[stage] = self._version(stage, ref)
        return out

    def _aliased(self, name: str, alias: str) -> str | None:
        from app import registry

        version = registry.get_version(self.uri, name, alias)
        return str(version.version) if version is not None else None

    def champion(self, config: dict | None = None) -> CanaryVersions:
        versions = self.versions_of(config or live_config(), CHAMPION_STAGES, "champion")
        return CanaryVersions(**versions)

    def status(self) -> dict:
        """Arms and versions, configured and realised share, start time, counts, abort."""
        from app import registry

        config = live_config()
        user_config = ingress_config(config)
        share = float(user_config.get("canary_share", 0.0))
        experiment = str(user_config.get("experiment", "default"))
        counts = self.store.counts(experiment)
        abort = self.store.abort(experiment)
        if abort and abort.get("run_id") != user_config.get("canary_started_at"):
            abort = None  # from an earlier run of the same experiment name
        served = {arm: counts.get(f"requests:{arm}", 0) for arm in ("champion", "canary")}
        total = sum(served.values())
        aliases = {
            stage: {alias: self._aliased(name, alias) for alias in registry.ALIASES}
            for stage, name in self.models.items()
        }
        return {
            # the abort record of a rolled-back run stays readable, the state is idle
            "state": ("aborted" if abort else "running") if share > 0 else "idle",
            "experiment": experiment,
            "started_at": user_config.get("canary_started_at"),
            "placement": "local" if is_local(config) else "remote",
            "arms": {
                "champion": self.versions_of(config, CHAMPION_STAGES, "champion"),
                "canary": self.versions_of(config, CANARY_STAGES, "canary") if share else None,
            },
            "aliases": aliases,
            "configured_share": share,
            "effective_share": 0.0 if abort else share,
            "served": served,
            "canary_failed": counts.get("canary_failed", 0),
            "realised_share": served["canary"] / total if total else None,
            "abort": abort,
        }

    # ---------------------------------------------------------------- operations
    def start(self, versions: CanaryVersions, share: float, experiment: str) -> dict:
        from app import registry

        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        config = live_config()
        if float(ingress_config(config).get("canary_share", 0.0)) > 0:
            raise RuntimeError("a canary is running: promote or roll it back first")
        champion = self.champion(config)
        for stage, version in (("retrieval", versions.retrieval), ("ranking", versions.ranking)):
            if registry.get_version(self.uri, self.models[stage], version) is None:
                raise LookupError(f"{self.models[stage]} has no version {version}")
        for stage, version in (("retrieval", versions.retrieval), ("ranking", versions.ranking)):
            registry.set_alias(self.uri, self.models[stage], registry.CHALLENGER, version)
        refs = {
            "CanaryRetrieval": f"{self.models['retrieval']}@{versions.retrieval}",
            "CanaryRanking": f"{self.models['ranking']}@{versions.ranking}",
        }
        headroom = self.settings.experiments.canary.replica_headroom
        most = max(champion_max_replicas(config, n) for n in CHAMPION_STAGES)
        config = self._deploy(
            with_canary_stages(config, refs, True, canary_max_replicas(most, share, headroom))
        )
        self.store.clear(experiment)
        started_at = self.clock.now().isoformat()
        self._deploy(with_share(config, share, experiment, started_at))
        return {
            "experiment": experiment,
            "share": share,
            "started_at": started_at,
            "champion": vars(champion),
            "canary": vars(versions),
        }

    def promote(self) -> dict:
        from app import registry

        config = live_config()
        canary = self.versions_of(config, CANARY_STAGES, "canary")
        if float(ingress_config(config).get("canary_share", 0.0)) <= 0 or None in canary.values():
            raise RuntimeError("no canary is running")
        for stage, version in canary.items():
            registry.set_alias(self.uri, self.models[stage], registry.CHAMPION, version)
        refs = {name: f"{self.models[s]}@{canary[s]}" for name, s in CHAMPION_STAGES.items()}
        config = self._deploy(with_champion(config, refs))
        self._stop(config, "promoted")
        return {"outcome": "promoted", "champion": canary}

    def rollback(self, reason: str = "") -> dict:
        config = live_config()
        champion = self.versions_of(config, CHAMPION_STAGES, "champion")
        self._stop(config, f"rolled back: {reason}" if reason else "rolled back")
        return {"outcome": "rolled_back", "champion": champion, "reason": reason}

    def _stop(self, config: dict, outcome: str) -> None:
        """Share 0, then the canary's replicas to 0; challenger tagged and removed."""
        from app import registry

        config = self._deploy(with_share(config, 0.0))
        self._deploy(with_canary_stages(config, {}, False))
        record = json.dumps({"outcome": outcome, "at": self.clock.now().isoformat()})
        for name in self.models.values():
            version = registry.get_version(self.uri, name, registry.CHALLENGER)
            if version is not None:
                registry.set_version_tag(self.uri, name, version.version, OUTCOME_TAG, record)
            registry.delete_alias(self.uri, name, registry.CHALLENGER)
