"""Telemetry and usage reporting of the platform's dependencies, switched off.

The platform runs offline on loopback, so MLflow's telemetry client and Ray's usage
reporting have nothing to reach; MLflow's client also rewrites ``os.environ`` from a
background thread (``_MLFLOW_TELEMETRY_SESSION_ID``), which races any code iterating the
environment. ``TELEMETRY_OFF`` is applied to ``os.environ`` when the ``app`` package is
imported (before anything imports mlflow or ray), so every project process, every child it
starts (the stack's servers, the Ray head and hence its job drivers, workers and Serve
replicas) inherits it; ``cluster.yaml`` exports the same variables on every node.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

TELEMETRY_OFF: dict[str, str] = {
    # mlflow.telemetry.utils.is_telemetry_disabled
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # ray._common.usage.usage_lib (reporting and the opt-in prompt) and Ray Data's collector
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DATA_USAGE_DISABLED": "1",
}


def disable_telemetry(environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set every ``TELEMETRY_OFF`` variable in ``environ`` (default ``os.environ``); return it."""
    target = os.environ if environ is None else environ
    target.update(TELEMETRY_OFF)
    return target


def shell_exports() -> str:
    """``export K=V ...`` for shell start commands (cluster launcher nodes)."""
    return "export " + " ".join(f"{key}={value}" for key, value in TELEMETRY_OFF.items())
