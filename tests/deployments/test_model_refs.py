"""Model references in user_config: MLflow aliases resolved into the deployed config."""

from __future__ import annotations

import pytest

from app.serving.model_refs import resolve_arms
from deployments.deploy import load_config, resolve_aliases, with_user_config


def _models(config: dict, name: str) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)[
        "user_config"
    ]["models"]


@pytest.mark.integration
def test_alias_refs_resolve_through_the_registry(tmp_path, monkeypatch):
    """A real MLflow (SQLite) registry: moving the alias changes the deployed user_config."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("FEEDRAY_MLFLOW__TRACKING_URI", uri)
    from app.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    name = settings.models.retrieval_model_name
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(
        uri
    )  # another test may have pointed the process-wide registry elsewhere
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    v1 = client.create_model_version(name, source=str(tmp_path), run_id=None)
    v2 = client.create_model_version(name, source=str(tmp_path), run_id=None)
    client.set_registered_model_alias(name, "champion", v1.version)
    ranker = settings.models.ranking_model_name
    client.create_registered_model(ranker)
    client.set_registered_model_alias(
        ranker, "champion", client.create_model_version(ranker, source=str(tmp_path)).version
    )
    config = with_user_config(
        load_config(), "Retrieval", models={"champion": "alias:champion", "canary": f"{name}@9"}
    )
    assert _models(resolve_aliases(config, settings), "Retrieval") == {
        "champion": f"{name}@{v1.version}",
        "canary": f"{name}@9",
    }
    client.set_registered_model_alias(name, "champion", v2.version)  # promotion
    assert (
        _models(resolve_aliases(config, settings), "Retrieval")["champion"]
        == f"{name}@{v2.version}"
    )
    # No challenger alias yet: the canary arm serves the champion rather than failing.
    config = with_user_config(
        load_config(),
        "Retrieval",
        models={"champion": "alias:champion", "canary": "alias:challenger"},
    )
    assert (
        _models(resolve_aliases(config, settings), "Retrieval")["canary"] == f"{name}@{v2.version}"
    )
    assert resolve_arms(
        {"champion": "alias:champion", "canary": "alias:challenger"}, name, settings
    ) == {"champion": str(v2.version), "canary": str(v2.version)}
    with pytest.raises(LookupError):
        resolve_arms({"champion": "alias:nope"}, name, settings)
    get_settings.cache_clear()
