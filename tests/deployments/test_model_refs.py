"""Model references in user_config: pinned versions, and MLflow aliases via app/registry.py."""

from __future__ import annotations

import pytest

from deployments.deploy import load_config, resolve_aliases, with_user_config
from deployments.standins import resolve_model_ref


def test_pinned_refs_are_literal():
    assert resolve_model_ref("two_tower@7", "two_tower") == "7"
    assert resolve_model_ref("12", "dlrm") == "12"


@pytest.mark.integration
def test_alias_refs_resolve_through_the_registry(tmp_path, monkeypatch):
    """A real MLflow (SQLite) registry: moving the alias changes the deployed user_config."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("FEEDRAY_MLFLOW__TRACKING_URI", uri)
    from app.config import get_settings

    get_settings.cache_clear()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # another test may have pointed the process-wide registry elsewhere
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("two_tower")
    v1 = client.create_model_version("two_tower", source=str(tmp_path), run_id=None)
    v2 = client.create_model_version("two_tower", source=str(tmp_path), run_id=None)
    client.set_registered_model_alias("two_tower", "champion", v1.version)
    config = with_user_config(load_config(), "Retrieval", models={"champion": "alias:champion", "canary": "two_tower@9"})
    resolved = resolve_aliases(config)
    models = next(d for d in resolved["applications"][0]["deployments"] if d["name"] == "Retrieval")["user_config"]["models"]
    assert models == {"champion": f"two_tower@{v1.version}", "canary": "two_tower@9"}
    client.set_registered_model_alias("two_tower", "champion", v2.version)  # promotion
    resolved = resolve_aliases(config)
    models = next(d for d in resolved["applications"][0]["deployments"] if d["name"] == "Retrieval")["user_config"]["models"]
    assert models["champion"] == f"two_tower@{v2.version}"
    get_settings.cache_clear()
