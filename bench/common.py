"""Shared plumbing for the benchmark scripts: host facts, private stacks, JSON results."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.config import FeedraySettings
from app.stack.manager import Stack
from app.stack.process import free_port

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def host_info() -> dict:
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean in milliseconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def save(name: str, figures: dict) -> Path:
    """Write ``bench/results/<name>.json`` with the command that produced it, and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join(
            shlex.quote(a) for a in [Path(sys.executable).name, "-m", *_module_argv()]
        ),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return path


def _module_argv() -> list[str]:
    main = sys.modules["__main__"]
    module = getattr(main.__spec__, "name", None) if getattr(main, "__spec__", None) else None
    return [module or sys.argv[0], *sys.argv[1:]]


@contextmanager
def private_stack(components: Sequence[str] = ("redis", "kafka")) -> Iterator[FeedraySettings]:
    """A scratch Redis / Kafka on free loopback ports, purged afterwards."""
    with tempfile.TemporaryDirectory(prefix="feedray-bench-") as state:
        settings = FeedraySettings(
            state_dir=Path(state),
            redis={"port": free_port()},
            kafka={
                "port": free_port(),
                "controller_port": free_port(),
                "distribution_dir": PROJECT_ROOT / ".feedray" / "dist" / "kafka",
            },
            ray={"port": free_port(), "dashboard_port": free_port()},
            mlflow={"port": free_port()},
        )
        stack = Stack(settings, only=list(components))
        stack.up()
        try:
            yield settings
        finally:
            stack.down(purge=True)


def fresh_topics(settings: FeedraySettings, prefix: str = "bench") -> FeedraySettings:
    """``settings`` with a fresh, empty set of the platform's topics (``<prefix>.<kind>.<id>``),
    created on the broker."""
    import uuid

    from app.stack.kafka import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    topics = settings.kafka.topics.model_copy(
        update={
            kind: f"{prefix}.{kind}.{suffix}"
            for kind in ("engagement", "published", "dead_letter", "exposures")
        }
    )
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topics": topics})}
    )
    ensure_topics(settings)
    return settings
