"""The local Ray head node, with its dashboard and token authentication."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from app.stack.component import Component, http_ok
from app.stack.process import PidRecord, StackError, port_open, terminate, terminate_session
from app.stack.ray_env import haproxy_folder, head_environment, write_settings_file


def ray_auth_headers() -> dict[str, str]:
    """The bearer token Ray's token authentication expects, when one is configured.

    Ray 2.60 turns token auth on for new local clusters and keeps the token in
    ``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``.
    """
    token = os.environ.get("RAY_AUTH_TOKEN")
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        token = path.read_text().strip() if path.is_file() else None
    return {"Authorization": f"Bearer {token}"} if token else {}


class RayHead(Component):
    """A local Ray head node with its dashboard, started by ``ray start --head``."""

    name = "ray"
    start_timeout_s = 90.0

    @property
    def host(self) -> str:
        return self.settings.ray.host

    @property
    def ports(self) -> list[int]:
        ray = self.settings.ray
        return [ray.port, ray.dashboard_port, ray.dashboard_agent_port, ray.metrics_export_port]

    def healthy(self) -> bool:
        """The GCS port answers, the dashboard answers, and the head's agent answers: job
        submission needs the agent, which starts a while after the dashboard."""
        ray = self.settings.ray
        headers = ray_auth_headers()
        agent_url = f"http://{self.host}:{ray.dashboard_agent_port}/api/healthz"
        return (
            port_open(self.host, ray.port)
            and http_ok(f"{ray.dashboard_url}/api/version", headers=headers)
            and http_ok(agent_url, headers=headers)
        )

    def launch(self) -> PidRecord:
        ray_settings = self.settings.ray
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--node-ip-address={ray_settings.host}",
            f"--port={ray_settings.port}",
            "--include-dashboard=true",
            f"--dashboard-host={ray_settings.host}",
            f"--dashboard-port={ray_settings.dashboard_port}",
            f"--dashboard-agent-listen-port={ray_settings.dashboard_agent_port}",
            f"--metrics-export-port={ray_settings.metrics_export_port}",
            "--disable-usage-stats",
        ]
        if ray_settings.num_cpus is not None:
            command.append(f"--num-cpus={ray_settings.num_cpus}")
        if ray_settings.auth_mode == "token" and not ray_auth_headers():
            generated = subprocess.run(
                [command[0], "get-auth-token", "--generate"], capture_output=True, text=True,
                env={**os.environ, "RAY_AUTH_MODE": "token"}, timeout=60,
            )  # fmt: skip
            if generated.returncode != 0:
                raise StackError(
                    f"ray: could not create an auth token: {generated.stderr.strip()[-200:]}"
                )
        settings_file = write_settings_file(self.settings, self.paths.run)
        # `ray start` daemonises the head's processes and exits. Started in a POSIX session of
        # its own, every process of this head (and the workers it spawns later) stays in that
        # session, so `down` stops exactly this head and not other Ray clusters on the machine
        # (which `ray stop` would).
        with open(self.log_path, "ab") as log:
            launcher = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **head_environment(self.settings, settings_file)},
            )  # fmt: skip
            returncode = launcher.wait(timeout=180)
        if returncode != 0:
            terminate_session(launcher.pid, timeout_s=5)
            raise StackError(f"ray: `ray start --head` failed; see {self.log_path}")
        gcs_pid = _find_pid("gcs_server", f"--gcs_server_port={ray_settings.port}")
        if gcs_pid is None:
            raise StackError(f"ray: started but no gcs_server process found; see {self.log_path}")
        return PidRecord(self.name, gcs_pid, self.address, time.time(), command, launcher.pid)

    def stop(self, record: PidRecord) -> None:
        if record.process_session is not None:
            terminate_session(record.process_session, timeout_s=5)
        terminate(record.pid, timeout_s=5)
        shutil.rmtree(haproxy_folder(self.settings.state_dir), ignore_errors=True)


def _find_pid(process_name: str, argument: str) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and process_name.encode() in cmdline[0] and argument.encode() in cmdline:
            return int(proc.name)
    return None
