"""`ray job submit` against the head `feedray up` starts, as the README documents it: job drivers
run the project's interpreter with the stack's settings and telemetry off, a real training job
registers a model version in the stack's MLflow, and `feedray status` says how to sign in to the
dashboard. The stack is started from a bare shell (system PATH only, state folder relative to
where `up` ran, no CI markers), which is what a new user's terminal looks like."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.config import FeedraySettings
from app.stack.manager import Stack
from tests.app.test_telemetry import CI_MARKERS, OFF, PROBE
from tests.conftest import scratch_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
JOB_PROBE = (
    PROBE
    + """
import json, os, sys
from app.config import FeedraySettings
s = FeedraySettings()
print("PROBE " + json.dumps({
    "executable": sys.executable, "virtual_env": os.environ.get("VIRTUAL_ENV"),
    "path_head": os.environ["PATH"].split(os.pathsep)[0],
    "state_dir": str(s.state_dir), "redis": s.redis.address,
    "kafka": s.kafka.bootstrap_servers, "mlflow": s.mlflow.url,
    "telemetry": telemetry_probe()}))
"""
)


def bare_env(settings: FeedraySettings, state_dir: str) -> dict[str, str]:
    """A new user's shell: system PATH, no CI markers, no RAY_ADDRESS (a test process that joined
    Ray has one, and it overrides `--address`); the scratch stack's ports in FEEDRAY_*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FEEDRAY_")
        and k not in CI_MARKERS
        and k not in ("VIRTUAL_ENV", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin",
        FEEDRAY_STATE_DIR=state_dir,
        FEEDRAY_REDIS__PORT=str(settings.redis.port),
        FEEDRAY_KAFKA__PORT=str(settings.kafka.port),
        FEEDRAY_KAFKA__CONTROLLER_PORT=str(settings.kafka.controller_port),
        FEEDRAY_RAY__PORT=str(settings.ray.port),
        FEEDRAY_RAY__DASHBOARD_PORT=str(settings.ray.dashboard_port),
        FEEDRAY_RAY__DASHBOARD_AGENT_PORT=str(settings.ray.dashboard_agent_port),
        FEEDRAY_RAY__METRICS_EXPORT_PORT=str(settings.ray.metrics_export_port),
        FEEDRAY_RAY__NUM_CPUS="2",
        FEEDRAY_MLFLOW__PORT=str(settings.mlflow.port),
    )
    return env


def run(command: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 300):
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout_s
    )


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10
        ) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def submit(dashboard: str, env: dict[str, str], *entrypoint: str, timeout_s: float = 300):
    """The README's command: `RAY_AUTH_MODE=token .venv/bin/ray job submit --address ...
    --working-dir . -- <entrypoint>`, run from the project root. The head's job agent registers
    with the dashboard a while after the dashboard answers, and until then Ray refuses a
    submission with "No available agent"; that one refusal is retried for up to a minute."""
    deadline = time.monotonic() + 60.0
    while True:
        job = run(
            [str(VENV_BIN / "ray"), "job", "submit", "--address", dashboard, "--working-dir", ".",
             "--", *entrypoint],
            {**env, "RAY_AUTH_MODE": "token"}, ROOT, timeout_s,
        )  # fmt: skip
        refused = "No available agent to submit job" in job.stdout + job.stderr
        if job.returncode == 0 or not refused or time.monotonic() > deadline:
            return job
        time.sleep(3.0)


@pytest.fixture(scope="module")
def ray_mlflow_stack(tmp_path_factory: pytest.TempPathFactory):
    """`feedray up --only ray --only mlflow` from a bare shell in a scratch folder, with a small
    simulated offline store where the stack's default paths expect it."""
    from data.simulate.store import write_simulated_store
    from data.simulate.world import World, WorldConfig

    where = tmp_path_factory.mktemp("user")
    settings = scratch_settings(where / "state")
    env = bare_env(settings, "state")  # relative: resolved where `up` runs
    world = World.generate(
        WorldConfig(seed=3, n_users=300, n_items=500, n_creators=40, new_item_share=0.0)
    )
    write_simulated_store(world, 2, where / "state" / "offline")
    up = run([str(VENV_BIN / "feedray"), "up", "--only", "ray", "--only", "mlflow"], env, where)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, env, where
    finally:
        Stack(settings, only=["ray", "mlflow"]).down(purge=True)


def test_status_prints_the_dashboard_and_a_token_command_that_signs_in(ray_mlflow_stack):
    settings, env, where = ray_mlflow_stack
    status = run([str(VENV_BIN / "feedray"), "status", "--only", "ray"], env, where)
    assert status.returncode == 0, status.stdout + status.stderr
    (line,) = [ln for ln in status.stdout.splitlines() if ln.startswith("ray dashboard")]
    url = settings.ray.dashboard_url
    assert line.startswith(f"ray dashboard {url} (token required; print it with: ")
    token_command = line.split("print it with: ", 1)[1].rstrip(")")
    token = run(shlex.split(token_command), env, where).stdout.strip()
    assert token
    assert http_status(f"{url}/api/version") in (401, 403)  # what the browser meets
    assert http_status(f"{url}/api/version", {"Authorization": f"Bearer {token}"}) == 200
    as_json = json.loads(
        run([str(VENV_BIN / "feedray"), "status", "--only", "ray", "--json"], env, where).stdout
    )
    assert as_json["ray_dashboard"] == {
        "url": url, "auth_mode": "token", "token_command": token_command
    }  # fmt: skip


def test_job_drivers_run_the_project_environment_with_the_stack_settings(ray_mlflow_stack):
    settings, env, where = ray_mlflow_stack
    job = submit(settings.ray.dashboard_url, env, "python", "-c", JOB_PROBE)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    (probe,) = [ln for ln in job.stdout.splitlines() if ln.startswith("PROBE ")]
    seen = json.loads(probe.removeprefix("PROBE "))
    assert Path(seen["executable"]).parent == VENV_BIN
    assert seen["path_head"] == str(VENV_BIN)
    assert seen["virtual_env"] == sys.prefix
    assert seen["state_dir"] == str(where / "state")
    assert seen["redis"] == f"127.0.0.1:{settings.redis.port}"
    assert seen["kafka"] == f"127.0.0.1:{settings.kafka.port}"
    assert seen["mlflow"] == f"http://127.0.0.1:{settings.mlflow.port}"
    assert seen["telemetry"] == OFF


def test_training_job_submitted_with_ray_job_submit_registers_a_model_version(ray_mlflow_stack):
    from mlflow import MlflowClient

    settings, env, _where = ray_mlflow_stack
    # Both URIs explicit: MlflowClient takes the registry from mlflow's process-wide setting,
    # which app.registry sets for earlier tests' own MLflow servers in this process.
    client = MlflowClient(tracking_uri=settings.mlflow.url, registry_uri=settings.mlflow.url)
    name = "feedray-two-tower"
    assert client.search_model_versions(f"name='{name}'") == []
    job = submit(
        settings.ray.dashboard_url, env, "python", "-m", "train.retrieval", "--epochs", "1",
        timeout_s=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
    versions = client.search_model_versions(f"name='{name}'")
    assert [v.version for v in versions] == ["1"], job.stdout[-4000:]
    run_ = client.get_run(versions[0].run_id)
    assert run_.info.status == "FINISHED" and run_.data.params["two_tower.epochs"] == "1"
