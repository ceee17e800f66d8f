"""MLflow model registry: versions and the ``champion`` / ``challenger`` aliases serving reads.

A registered model version's artifact is a folder ``model_config.json`` + ``state_dict.pt``
(state dict + constructor config instead of a pickled module: portable across code
versions and quick to load), logged under the run's ``model/`` artifact path; an index job
logs ``index/`` beside it and tags the version with its parameters.

Tracking URI: ``settings.mlflow.tracking_uri`` when set, else a local SQLite backend at
``sqlite:///<state_dir>/mlflow/mlflow.db`` with artifacts under ``<state_dir>/mlflow/artifacts``.
(``settings.mlflow.url`` is the server address for when ``feedray up`` runs one; set
``FEEDRAY_MLFLOW__TRACKING_URI=http://127.0.0.1:5000`` to use it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from app.stack.process import port_open

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)


def tracking_uri(settings: Any | None = None) -> str:
    """The configured tracking URI, else the stack's MLflow server when it runs, else its SQLite
    store."""
    if settings is None:
        from app.config import get_settings

        settings = get_settings()
    if settings.mlflow.tracking_uri:
        return settings.mlflow.tracking_uri
    if port_open(settings.mlflow.host, settings.mlflow.port):  # the stack's tracking server
        return settings.mlflow.url
    # The same SQLite store the stack's server uses, so its UI shows runs made without it.
    root = Path(settings.state_dir).expanduser().resolve() / "data" / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Artifact location for new experiments: beside a SQLite file, else the server's default."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


def configure(uri: str) -> MlflowClient:
    """Point the mlflow module (runs) and a client (registry) at ``uri``."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    client = configure(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri))


def register_model(
    uri: str,
    name: str,
    run_id: str,
    artifact_path: str = "model",
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``name``."""
    client = configure(uri)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
            raise
    run = client.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    return client.create_model_version(
        name, source, run_id=run_id, tags=tags or {}, description=description
    )


def set_alias(uri: str, name: str, alias: str, version: str | int) -> None:
    configure(uri).set_registered_model_alias(name, alias, str(version))


def delete_alias(uri: str, name: str, alias: str) -> None:
    """Remove ``alias`` from ``name`` (nothing when it is not set)."""
    client = configure(uri)
    try:
        client.delete_registered_model_alias(name, alias)
    except MlflowException:
        pass


def set_version_tag(uri: str, name: str, version: str | int, key: str, value: str) -> None:
    configure(uri).set_model_version_tag(name, str(version), key, value)


def get_version(uri: str, name: str, alias_or_version: str | int) -> ModelVersion | None:
    """The version behind an alias (``champion``) or a version number; None if absent."""
    client = configure(uri)
    try:
        if str(alias_or_version).isdigit():
            return client.get_model_version(name, str(alias_or_version))
        return client.get_model_version_by_alias(name, str(alias_or_version))
    except MlflowException:
        return None


def versions(uri: str, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``: version, run_id, source, aliases, tags (oldest first)."""
    client = configure(uri)
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    try:  # search results carry no aliases in MLflow 3: read them from the registered model
        by_version: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            by_version.setdefault(str(version), []).append(alias)
    except MlflowException:
        by_version = {}
    out = [
        {
            "version": int(v.version),
            "run_id": v.run_id,
            "source": v.source,
            "aliases": sorted(by_version.get(str(v.version), [])),
            "tags": dict(v.tags),
            "status": v.status,
        }
        for v in found
    ]
    return sorted(out, key=lambda r: r["version"])


def download_version(
    uri: str, name: str, alias_or_version: str | int, dst: str | Path | None = None
) -> tuple[ModelVersion, Path]:
    """Download a version's model folder; raises LookupError when the alias/version is absent."""
    mv = get_version(uri, name, alias_or_version)
    if mv is None:
        raise LookupError(f"{name}@{alias_or_version} not found in {uri}")
    configure(uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=mv.source, dst_path=str(dst) if dst else None
    )
    return mv, Path(local)


def load_version(uri: str, name: str, alias: str | int = CHAMPION):
    """(model in eval mode, ModelVersion) for ``name@alias`` (or a version number)."""
    import json

    import torch

    mv, path = download_version(uri, name, alias)
    config = json.loads((path / "model_config.json").read_text())
    if config["kind"] == "two_tower":
        from app.models.two_tower import TwoTower as cls
    elif config["kind"] == "ranker":
        from app.models.ranker import Ranker as cls
    else:
        raise ValueError(f"unknown model kind {config['kind']!r}")
    model = cls.from_config(config)
    model.load_state_dict(torch.load(path / "state_dict.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, mv


def log_index(uri: str, run_id: str, index) -> None:
    """Log a ``FeedIndex`` as ``index/`` in the run of the model version it was built with."""
    import tempfile

    client = configure(uri)
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "index")
        client.log_artifacts(run_id, str(Path(tmp) / "index"), "index")


def load_index(uri: str, name: str, alias_or_version: str | int = CHAMPION):
    """The FAISS ``FeedIndex`` logged (as ``index/``) in the run of ``name@alias_or_version``."""
    from app.index import FeedIndex

    mv = get_version(uri, name, alias_or_version)
    if mv is None:
        raise LookupError(f"{name}@{alias_or_version} not found in {uri}")
    configure(uri)
    local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="index")
    return FeedIndex.load(local)
