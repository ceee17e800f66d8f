"""The live loop: long-running ``feedray`` commands that ``feedray up`` runs beside the servers.

Each live service is one detached ``feedray <command>`` process with its own log file and pid
record, like the servers: the catalogue consumer, the event collector, the trending refresher,
scheduled ingestion, the simulated audience that keeps producing events, and (named in
``stack.live_services`` only) the scheduled retraining pipeline. It has no port;
it is healthy while its process runs. The audience needs the world that ``feedray simulate
--sink kafka`` recorded (``world_record_path``); until there is one it is skipped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from app.config import FeedraySettings
from app.stack.component import Component, ComponentStatus, StackPaths
from app.stack.process import PidRecord, StackError, pid_alive, spawn_detached, terminate
from app.stack.settings import LIVE_SERVICE_NAMES

WORLD_RECORD = "world.json"


def world_record_path(settings: FeedraySettings) -> Path:
    """Where ``feedray simulate --sink kafka`` records the world the stack's data comes from."""
    return settings.state_dir.expanduser().resolve() / WORLD_RECORD


def feedray_argv(*args: str) -> list[str]:
    """The ``feedray`` command of this environment (the console script, else ``python -m``)."""
    script = Path(sys.executable).with_name("feedray")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "app.cli", *args]


def live_arguments(name: str, settings: FeedraySettings) -> list[str]:
    """The ``feedray`` arguments that run live service ``name`` until it is stopped."""
    arguments = {
        "catalogue": ["catalogue"],
        "collector": ["collect", "--workers", str(settings.stack.collector_workers)],
        "trending": ["trending", "--loop"],
        "ingest": ["ingest", "--schedule", "--interval", str(settings.ingest.interval_s)],
        "audience": ["audience"],
        "pipeline": ["pipeline", "schedule", "--interval", str(settings.pipeline.interval_s)],
    }
    return arguments[name]


class LiveService(Component):
    """One long-running ``feedray`` command of the live loop."""

    def __init__(self, settings: FeedraySettings, paths: StackPaths, name: str) -> None:
        super().__init__(settings, paths)
        self.name = name
        self.arguments = live_arguments(name, settings)

    @property
    def host(self) -> str:
        return ""

    @property
    def ports(self) -> list[int]:
        return []

    @property
    def address(self) -> str:
        return "feedray " + " ".join(self.arguments)

    def missing_prerequisite(self) -> str | None:
        """Why this service cannot start yet, or ``None``."""
        if self.name == "audience" and not world_record_path(self.settings).is_file():
            return "no simulated world yet (run `feedray simulate --sink kafka` or `feedray demo`)"
        return None

    def healthy(self) -> bool:
        return self.managed()

    def launch(self) -> PidRecord:
        command = feedray_argv(*self.arguments)
        pid = spawn_detached(command, self.log_path)
        return PidRecord(self.name, pid, self.address, time.time(), command)

    def up(self) -> str:
        if self.managed():
            return "already running"
        missing = self.missing_prerequisite()
        if missing:
            return f"skipped: {missing}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        record = self.launch()
        record.save(self.record_path)
        deadline = time.monotonic() + self.settings.stack.live_start_grace_s
        while time.monotonic() < deadline and pid_alive(record.pid):
            time.sleep(0.1)
        if not pid_alive(record.pid):
            self.record_path.unlink(missing_ok=True)
            raise StackError(
                f"{self.name}: `{self.address}` exited during start-up: "
                f"{_last_line(self.log_path)}; see {self.log_path}"
            )
        return f"started (pid {record.pid})"

    def stop(self, record: PidRecord) -> None:
        terminate(record.pid, timeout_s=15.0)

    def status(self) -> ComponentStatus:
        record = self.record()
        running = record is not None and pid_alive(record.pid)
        if running:
            detail = f"log {self.log_path}"
        elif record is not None:
            detail = f"exited: {_last_line(self.log_path)}; see {self.log_path}"
        else:
            detail = self.missing_prerequisite() or "not started"
        return ComponentStatus(
            name=self.name,
            state="up" if running else "down",
            address=self.address,
            managed=running,
            pid=record.pid if running and record else None,
            detail=detail,
        )

    def purge(self) -> None:
        self.log_path.unlink(missing_ok=True)
        if self.name == "audience":
            world_record_path(self.settings).unlink(missing_ok=True)


def _last_line(path: Path, limit: int = 200) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-limit:] if lines else "no output"


def live_services(settings: FeedraySettings, names: list[str] | None = None) -> list[LiveService]:
    """The live services ``names`` (default: ``settings.stack.live_services``), in start order."""
    paths = StackPaths.from_settings(settings)
    wanted = set(names) if names is not None else set(settings.stack.live_services)
    return [LiveService(settings, paths, name) for name in LIVE_SERVICE_NAMES if name in wanted]
