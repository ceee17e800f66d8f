"""The MLflow tracking server and model registry of the local stack."""

from __future__ import annotations

import sys
import time

from app.stack.component import Component, http_ok
from app.stack.process import PidRecord, spawn_detached


class MlflowServer(Component):
    """MLflow tracking server + model registry on SQLite, artifacts under ``data/mlflow``."""

    name = "mlflow"
    start_timeout_s = 90.0

    @property
    def host(self) -> str:
        return self.settings.mlflow.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.mlflow.port]

    def healthy(self) -> bool:
        return http_ok(f"http://{self.host}:{self.settings.mlflow.port}/health")

    def launch(self) -> PidRecord:
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.host,
            "--port", str(self.settings.mlflow.port),
            "--backend-store-uri", f"sqlite:///{self.data_dir / 'mlflow.db'}",
            "--artifacts-destination", str(self.data_dir / "artifacts"),
            "--workers", "1",
        ]  # fmt: skip
        pid = spawn_detached(
            command, self.log_path, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        )
        return PidRecord(self.name, pid, self.address, time.time(), command)
