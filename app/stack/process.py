"""Process plumbing for the local stack: ports, detached children, pid records."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A one-line, user-facing reason why the stack cannot do what was asked."""


def port_open(host: str, port: int, timeout_s: float = 0.25) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port nobody listens on right now (for tests and scratch stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2, what: str = ""
) -> None:
    """Poll ``condition`` until it holds; raise ``StackError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what or 'condition'}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0); treat it as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def spawn_detached(
    command: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` in its own session (it outlives this CLI); stdout+stderr go to
    ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return child.pid


def terminate(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL whatever is left after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def session_members(session_id: int) -> list[int]:
    """Pids of the processes in POSIX session ``session_id`` (what a daemonising launcher left)."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def terminate_session(session_id: int, timeout_s: float = 20.0) -> None:
    """SIGTERM every process of a POSIX session, then SIGKILL what remains after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(session_id):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and session_members(session_id):
            time.sleep(0.2)
        if not session_members(session_id):
            return


@dataclass(frozen=True)
class PidRecord:
    """What ``feedray up`` started, so that ``down`` stops exactly that."""

    component: str
    pid: int
    address: str
    started_at: float
    command: list[str]
    process_session: int | None = None  # the POSIX session of a daemonising launcher (Ray)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PidRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
