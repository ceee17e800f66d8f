"""Shared plumbing for the benchmark scripts: host facts, private stacks, JSON results."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
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


class HandleCaller:
    """Deployment handle calls from the driver, awaited on one event loop that keeps running
    in a thread of its own: the handles' routers bind to it, and their long-poll clients
    (replica updates after a redeploy) need it running between calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="handles").start()

    def call(self, handle, method: str, *args):
        """``handle.<method>.remote(*args)``, its answer; the method is looked up on the loop
        too (that first look-up creates the handle's router)."""

        async def ask():
            return await getattr(handle, method).remote(*args)

        return asyncio.run_coroutine_threadsafe(ask(), self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def tree_pss_bytes(root: int, exclude: tuple[str, ...] = ()) -> int:
    """Proportional set size (bytes) of process ``root`` and all its descendants, less the
    subtrees of processes whose name (``/proc/<pid>/comm``) is in ``exclude``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in exclude:
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return total


class PssSampler:
    """``tree_pss_bytes`` of this process's tree every ``interval_s`` on a daemon thread:
    (seconds since start, bytes) samples, until ``stop``."""

    def __init__(self, exclude: tuple[str, ...] = (), interval_s: float = 0.5) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self.started = time.perf_counter()  # samples' times are seconds since this

        def run() -> None:
            while not self._stop.is_set():
                pss = tree_pss_bytes(os.getpid(), exclude)
                self.samples.append((time.perf_counter() - self.started, pss))
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=run, daemon=True, name="pss-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def peak_bytes(self, start_s: float = 0.0, end_s: float = float("inf")) -> int:
        """The highest sample taken between ``start_s`` and ``end_s`` (0 when none)."""
        return max((b for t, b in self.samples if start_s <= t <= end_s), default=0)
