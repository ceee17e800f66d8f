"""One server of the local stack: how it starts detached, reports health, stops and purges.

``up`` starts a server only when nothing answers on its ports, records the pid under
``run/`` and waits until it is healthy; ``down`` stops only what ``up`` started and keeps
its data (under ``data/<component>``), which ``down --purge`` clears.
"""

from __future__ import annotations

import shutil
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from app.config import FeedraySettings
from app.stack.process import (
    PidRecord,
    StackError,
    pid_alive,
    port_open,
    terminate,
    wait_until,
)


@dataclass(frozen=True)
class StackPaths:
    """Layout of the state folder: ``run/`` pid records, ``logs/``, ``data/<component>``."""

    root: Path

    @classmethod
    def from_settings(cls, settings: FeedraySettings) -> StackPaths:
        return cls(settings.state_dir.expanduser().resolve())

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def data(self, component: str) -> Path:
        return self.root / "data" / component


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # "up" | "down"
    address: str
    managed: bool  # started by `feedray up` and still running
    pid: int | None
    detail: str = ""


def http_ok(url: str, timeout_s: float = 1.0, headers: dict[str, str] | None = None) -> bool:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


class Component(ABC):
    """One server of the local stack."""

    name: str
    start_timeout_s: float = 60.0

    def __init__(self, settings: FeedraySettings, paths: StackPaths) -> None:
        self.settings = settings
        self.paths = paths

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def ports(self) -> list[int]:
        """Every port this component listens on; the first is its address."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports[0]}"

    def port_variable(self, port: int) -> str:
        """The environment variable of the setting that chose ``port``, e.g.
        ``FEEDRAY_RAY__DASHBOARD_AGENT_PORT``."""
        section = getattr(self.settings, self.name, None)
        fields = section.model_dump() if section is not None else {}
        field = next((k for k, v in fields.items() if k.endswith("port") and v == port), "port")
        return f"FEEDRAY_{self.name.upper()}__{field.upper()}"

    @property
    def record_path(self) -> Path:
        return self.paths.run / f"{self.name}.json"

    @property
    def log_path(self) -> Path:
        return self.paths.logs / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.paths.data(self.name)

    @abstractmethod
    def healthy(self) -> bool:
        """True when the server answers its own protocol."""

    @abstractmethod
    def launch(self) -> PidRecord:
        """Start the server detached; return what ``stop`` needs."""

    def check_prerequisites(self) -> None:  # noqa: B027 - optional hook
        """Raise ``StackError`` when something this component needs is missing."""

    def after_ready(self) -> None:  # noqa: B027 - optional hook
        """Work that needs the running server (e.g. creating topics)."""

    def record(self) -> PidRecord | None:
        return PidRecord.load(self.record_path)

    def managed(self) -> bool:
        record = self.record()
        return record is not None and pid_alive(record.pid)

    def status(self) -> ComponentStatus:
        record = self.record()
        managed = record is not None and pid_alive(record.pid)
        up = self.healthy()
        return ComponentStatus(
            name=self.name,
            state="up" if up else "down",
            address=self.address,
            managed=managed,
            pid=record.pid if managed and record else None,
            detail="" if up or not managed else "process running but not answering",
        )

    def up(self) -> str:
        """Start unless already running; return what happened in a few words."""
        if self.managed():
            wait_until(self.healthy, self.start_timeout_s, what=f"{self.name} to answer")
            self.after_ready()
            return "already running"
        for port in self.ports:
            if port_open(self.host, port):
                raise StackError(
                    f"{self.name}: port {port} on {self.host} is already in use by a process "
                    f"feedray did not start; stop it or choose another port "
                    f"({self.port_variable(port)}=...)"
                )
        self.check_prerequisites()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        record = self.launch()
        record.save(self.record_path)
        try:
            wait_until(
                lambda: self.healthy() or not pid_alive(record.pid),
                self.start_timeout_s,
                what=f"{self.name} to answer on {self.address}",
            )
        except StackError as error:
            raise StackError(f"{error}; see {self.log_path}") from None
        if not self.healthy():
            self.record_path.unlink(missing_ok=True)
            raise StackError(f"{self.name} exited during start-up; see {self.log_path}")
        self.after_ready()
        return "started"

    def down(self) -> str:
        record = self.record()
        if record is None or not pid_alive(record.pid):
            self.record_path.unlink(missing_ok=True)
            return "not running (not started by feedray)" if self.healthy() else "not running"
        self.stop(record)
        self.record_path.unlink(missing_ok=True)
        return "stopped"

    def stop(self, record: PidRecord) -> None:
        terminate(record.pid)

    def purge(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
