"""The deployment manifests: cluster.yaml against Ray's cluster-launcher schema, and
serve_config.yaml / the KubeRay RayService's serveConfigV2 against Serve's deploy schema
(the same application, deployments and model references in both)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.config import RaySettings
from app.stack.ray_env import serve_transport_env

ROOT = Path(__file__).resolve().parents[2]
# The Serve transport `feedray up` starts its head with: every manifest's nodes start the same.
SERVE_TRANSPORT = serve_transport_env(RaySettings())


def test_cluster_yaml_is_a_valid_launcher_config():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    validate_config(config)  # raises on any schema violation
    types = config["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types)
    assert types["head"]["resources"] == {"CPU": 0}  # replicas stay off the head
    setup = " ".join(config["setup_commands"])
    assert "-e ." in setup and "requirements/gpu.lock" in setup and "requirements/cpu.lock" in setup
    broken = dict(config, available_node_types=dict(types, head=dict(types["head"], bogus=1)))
    with pytest.raises(Exception, match="bogus"):
        validate_config(broken)


def _stages(config: dict) -> dict[str, dict]:
    app = config["applications"][0]
    return {d["name"]: d for d in app["deployments"]}


def test_serve_config_and_rayservice_carry_the_same_application():
    from ray.serve.schema import ServeDeploySchema

    from deployments.deploy import load_config, with_stages

    local = load_config()
    ServeDeploySchema.model_validate(local)
    ServeDeploySchema.model_validate(with_stages(local, "local"))
    manifest = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    kube = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(kube)
    a, b = local["applications"][0], kube["applications"][0]
    assert a["import_path"] == b["import_path"] == "deployments.app:app_builder"
    assert set(a["args"]) == set(b["args"])
    for name, entry in _stages(local).items():
        other = _stages(kube)[name]
        assert entry.get("user_config", {}).get("models") == other.get("user_config", {}).get(
            "models"
        )
        assert "autoscaling_config" in entry and "autoscaling_config" in other
    assert set(_stages(local)) == set(_stages(kube))
    for config in (local, kube):  # no canary running, and none of its replicas
        stages = _stages(config)
        ingress = stages["Ingress"]  # admission: a bounded queue, shed with 503 + Retry-After
        assert ingress["max_queued_requests"] > 0 and ingress["max_ongoing_requests"] > 0
        assert ingress["backpressure_config"]["status_code"] == 503
        assert ingress["backpressure_config"]["retry_after_s"] >= 1
        assert stages["Ingress"]["user_config"]["canary_share"] == 0.0
        for name in ("CanaryRetrieval", "CanaryRanking"):
            scaling = stages[name]["autoscaling_config"]
            assert scaling["min_replicas"] == scaling["initial_replicas"] == 0
            assert stages[name]["user_config"]["models"] == {"canary": "alias:challenger"}


def test_serve_config_fits_a_two_cpu_host_with_a_canary_running():
    from deployments.deploy import load_config

    stages = _stages(load_config())
    reserved = sum(
        s["ray_actor_options"]["num_cpus"] * max(1, s["autoscaling_config"]["min_replicas"])
        for s in stages.values()
    )
    assert reserved <= 2.0 - 0.5  # room left for Ray's own actors and the exposure producer


@pytest.mark.parametrize(
    "stages, names",
    [
        ("remote", {"Ingress", "Retrieval", "Ranking", "CanaryRetrieval", "CanaryRanking"}),
        ("local", {"Ingress"}),
    ],
)
def test_app_builder_builds_the_bind_graph(stages, names):
    from deployments.app import app_builder

    app = app_builder({"settings": {}, "serving": {}, "gpu": False, "stages": stages})
    found, todo = set(), [app._bound_deployment]
    while todo:
        deployment = todo.pop()
        found.add(deployment.name)
        todo.extend(
            a._bound_deployment
            for a in (*deployment.init_args, *deployment.init_kwargs.values())
            if hasattr(a, "_bound_deployment")
        )
    assert found == names
    with pytest.raises(ValueError, match="stages"):
        app_builder({"stages": "sideways"})


def test_app_builder_binds_by_keyword_and_lays_serving_over_the_settings():
    from deployments.app import app_builder

    app = app_builder(
        {
            "settings": {"serving": {"candidate_count": 300}},
            "serving": {"hop_allowance_ms": 7.5},
            "gpu": False,
        }
    )
    ingress = app._bound_deployment
    assert ingress.init_args == ()
    assert set(ingress.init_kwargs) == {
        "settings", "retrieval", "ranking", "feature_lookup", "canary_retrieval", "canary_ranking"
    }  # fmt: skip
    serving = ingress.init_kwargs["settings"]["serving"]
    assert (serving["candidate_count"], serving["hop_allowance_ms"]) == (300, 7.5)
    for stage in ("retrieval", "ranking", "canary_retrieval", "canary_ranking"):
        bound = ingress.init_kwargs[stage]._bound_deployment
        assert bound.init_args == () and set(bound.init_kwargs) == {"settings"}
        assert bound.init_kwargs["settings"]["serving"]["hop_allowance_ms"] == 7.5
    with pytest.raises(ValueError, match="unknown application args"):
        app_builder({"extras": {"hop_allowance_ms": 60}})


@pytest.mark.parametrize("node_kind", ["head", "worker"])
def test_cluster_nodes_start_ray_in_the_project_environment(node_kind: str, tmp_path: Path):
    """The shell line that starts Ray on each node, run up to `ray start` with `env` in its
    place: the venv leads PATH and every telemetry switch of app.telemetry is set."""
    import subprocess

    from app.telemetry import TELEMETRY_OFF

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    (start,) = [c for c in config[f"{node_kind}_start_ray_commands"] if "ray start" in c]
    prefix, ray_start = start.split("~/venv/bin/ray start", 1)
    assert "--disable-usage-stats" in ray_start
    clean = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(
        ["bash", "-c", prefix + " env"], capture_output=True, text=True, check=True, env=clean
    )
    env = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    assert env["PATH"].split(":")[0] == f"{tmp_path}/venv/bin"
    assert env["VIRTUAL_ENV"] == f"{tmp_path}/venv"
    assert {k: env.get(k) for k in TELEMETRY_OFF} == TELEMETRY_OFF
    assert {k: env.get(k) for k in SERVE_TRANSPORT} == SERVE_TRANSPORT
    assert "FEEDRAY_CONFIG_FILE" not in env  # no feedray.yaml in the project: defaults
    (tmp_path / "feedray").mkdir()
    (tmp_path / "feedray" / "feedray.yaml").write_text("{}\n")
    shown = subprocess.run(
        ["bash", "-c", prefix + " env"], capture_output=True, text=True, check=True, env=clean
    )
    assert f"FEEDRAY_CONFIG_FILE={tmp_path}/feedray/feedray.yaml" in shown.stdout.splitlines()


def test_rayservice_containers_run_with_telemetry_off_and_the_serve_transport():
    from app.telemetry import TELEMETRY_OFF

    manifest = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in container["env"]}
            assert {k: env.get(k) for k in TELEMETRY_OFF} == TELEMETRY_OFF, container["name"]
            assert {k: env.get(k) for k in SERVE_TRANSPORT} == SERVE_TRANSPORT, container["name"]
    assert len(groups) == 3
