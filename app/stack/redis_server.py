"""The Redis server of the local stack (the online feature store)."""

from __future__ import annotations

import shutil
import time

from app.stack.component import Component
from app.stack.process import PidRecord, StackError, spawn_detached


class RedisServer(Component):
    """Debian's ``redis-server`` with AOF + RDB persistence under ``data/redis``."""

    name = "redis"
    start_timeout_s = 20.0

    @property
    def host(self) -> str:
        return self.settings.redis.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.redis.port]

    def check_prerequisites(self) -> None:
        if shutil.which("redis-server") is None:
            raise StackError(
                "redis: redis-server not found; run `make install` (Debian package redis-server)"
            )

    def healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(**self.settings.redis.client_kwargs()).ping())
        except (redis.RedisError, OSError):
            return False

    def launch(self) -> PidRecord:
        redis_settings = self.settings.redis
        command = [
            "redis-server",
            "--bind", redis_settings.host,
            "--port", str(redis_settings.port),
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "300 1 60 10000",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
        ]  # fmt: skip
        if redis_settings.password is not None:
            secret = redis_settings.password.get_secret_value()
            command += ["--requirepass", secret]
            if redis_settings.username and redis_settings.username != "default":
                command += [
                    "--user",
                    redis_settings.username,
                    "on",
                    f">{secret}",
                    "~*",
                    "&*",
                    "+@all",
                ]
        pid = spawn_detached(command, self.log_path)
        return PidRecord(self.name, pid, self.address, time.time(), _redact(command))


def _redact(command: list[str]) -> list[str]:
    redacted = list(command)
    for index, part in enumerate(redacted[:-1]):
        if part == "--requirepass":
            redacted[index + 1] = "***"
    return [("on" if part.startswith(">") else part) for part in redacted]
