"""Prometheus of the local stack: the Ray head's metrics, kept and queryable while it runs."""

from __future__ import annotations

import shutil
import time

import yaml

from app.stack.component import Component, http_ok
from app.stack.process import PidRecord, StackError, spawn_detached


def scrape_config(scrape_interval_s: float, targets: list[str]) -> dict:
    """``prometheus.yml``: one job, ``ray``, scraping each node's metrics export."""
    return {
        "global": {"scrape_interval": f"{scrape_interval_s:g}s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": targets}]}],
    }


class PrometheusServer(Component):
    """Debian's ``prometheus`` on loopback, scraping ``ray.host:ray.metrics_export_port``
    (where the head's metrics agent exports every Ray process's metrics: the replicas'
    ``ray_feedray_*`` and Serve's own), its time series under ``data/prometheus``."""

    name = "prometheus"
    start_timeout_s = 30.0

    @property
    def host(self) -> str:
        return self.settings.prometheus.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.prometheus.port]

    def check_prerequisites(self) -> None:
        if shutil.which("prometheus") is None:
            raise StackError(
                "prometheus: not found; run `make install` (Debian package prometheus)"
            )

    def healthy(self) -> bool:
        return http_ok(f"{self.settings.prometheus.url}/-/ready")

    def launch(self) -> PidRecord:
        settings, ray = self.settings.prometheus, self.settings.ray
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        target = f"{ray.host}:{ray.metrics_export_port}"
        config.write_text(yaml.safe_dump(scrape_config(settings.scrape_interval_s, [target])))
        command = [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={settings.retention}",
            f"--web.listen-address={settings.host}:{settings.port}",
        ]
        pid = spawn_detached(command, self.log_path)
        return PidRecord(self.name, pid, self.address, time.time(), command)
