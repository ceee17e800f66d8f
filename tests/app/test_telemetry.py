"""Dependencies' telemetry is off in every process the project starts, decided as MLflow and Ray
decide it: fresh interpreters with a clean environment (no CI or pytest markers, which MLflow
reads as "testing" and would switch its client off by itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.telemetry import TELEMETRY_OFF, disable_telemetry

ROOT = Path(__file__).resolve().parents[2]
# mlflow.telemetry.utils._is_ci_env_or_testing: any of these switches its client off by itself.
CI_MARKERS = (
    "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
    "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
    "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID",
)  # fmt: skip

PROBE = """
def telemetry_probe():
    import os
    import mlflow  # noqa: F401  (import runs mlflow.telemetry.client.set_telemetry_client)
    from mlflow.telemetry.client import get_telemetry_client
    from mlflow.telemetry.utils import is_telemetry_disabled
    from ray._common.usage.usage_lib import usage_stats_enabled
    return {
        "mlflow_client": get_telemetry_client() is not None,
        "mlflow_disabled": is_telemetry_disabled(),
        "ray_usage_stats": usage_stats_enabled(),
        "session_id_in_env": "_MLFLOW_TELEMETRY_SESSION_ID" in os.environ,
    }
"""
OFF = {
    "mlflow_client": False,
    "mlflow_disabled": True,
    "ray_usage_stats": False,
    "session_id_in_env": False,
}


def clean_env() -> dict[str, str]:
    drop = set(CI_MARKERS) | set(TELEMETRY_OFF) | {"_MLFLOW_TELEMETRY_SESSION_ID"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_python(code: str, timeout_s: float = 180) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(),
        cwd=ROOT, timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_disable_telemetry_sets_every_switch_over_existing_values():
    environ = {"MLFLOW_DISABLE_TELEMETRY": "false", "RAY_USAGE_STATS_ENABLED": "1", "KEEP": "x"}
    assert disable_telemetry(environ) is environ
    assert environ == {**TELEMETRY_OFF, "KEEP": "x"}


def test_probe_sees_telemetry_on_without_the_project():
    """Control: in this environment a bare ``import mlflow`` does start the telemetry client,
    so the checks below can fail."""
    seen = run_python(PROBE + "\nimport json; print(json.dumps(telemetry_probe()))")
    assert seen["mlflow_client"] and seen["session_id_in_env"] and seen["ray_usage_stats"]


@pytest.mark.parametrize("entry", ["app.cli", "train.index", "data.trending", "deployments.deploy"])
def test_project_processes_run_with_telemetry_off(entry: str):
    """What ``feedray ...`` and ``python -m train.<job>`` import first, then mlflow."""
    seen = run_python(
        f"import {entry}\n" + PROBE + "\nimport json; print(json.dumps(telemetry_probe()))"
    )
    assert seen == OFF


@pytest.mark.integration
def test_ray_workers_of_a_project_process_run_with_telemetry_off():
    """A project driver's local Ray (``connect_ray``); the task imports mlflow but not ``app``."""
    code = (
        PROBE
        + """
import json
import ray
from app.config import FeedraySettings
from app.ray_runtime import connect_ray
from app.stack.process import free_port

connect_ray(FeedraySettings(ray={"port": free_port(), "dashboard_port": free_port()}), num_cpus=1)
seen = ray.get(ray.remote(num_cpus=0.5)(telemetry_probe).remote())
ray.shutdown()
print(json.dumps(seen))
"""
    )
    assert run_python(code, timeout_s=300) == OFF
