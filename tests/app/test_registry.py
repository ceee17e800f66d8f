"""Registry on a real MLflow SQLite backend (no mocks)."""

import mlflow
import pytest

from app import registry
from app.models.config import FeatureSettings, TwoTowerSettings
from app.models.two_tower import TwoTower
from train.mlflow_run import save_model_dir


@pytest.mark.integration
def test_register_alias_load(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = registry.experiment_id(uri, "t")
    model = TwoTower(
        FeatureSettings(user_buckets=64, item_buckets=64, creator_buckets=64),
        TwoTowerSettings(output_dim=8),
    )
    runs = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=exp) as run:
            save_model_dir(model, tmp_path / run.info.run_id / "model")
            mlflow.log_artifacts(str(tmp_path / run.info.run_id / "model"), "model")
        runs.append(registry.register_model(uri, "m", run.info.run_id))
    registry.set_alias(uri, "m", "champion", 1)
    registry.set_alias(uri, "m", "challenger", 2)
    found = registry.versions(uri, "m")
    assert [(v["version"], v["aliases"]) for v in found] == [(1, ["champion"]), (2, ["challenger"])]
    loaded, mv = registry.load_version(uri, "m", "challenger")
    assert str(mv.version) == "2" and loaded.settings.output_dim == 8
    with pytest.raises(LookupError):
        registry.load_version(uri, "nope", "champion")
    registry.set_version_tag(uri, "m", 2, "canary_outcome", "rolled back")
    registry.delete_alias(uri, "m", "challenger")
    registry.delete_alias(uri, "m", "challenger")  # absent: nothing happens
    assert registry.get_version(uri, "m", "challenger") is None
    assert registry.get_version(uri, "m", 2).tags["canary_outcome"] == "rolled back"
