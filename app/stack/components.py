"""The four local servers of the stack: Redis, the Kafka broker (KRaft), a Ray head, MLflow.

Each component knows how to start itself detached on loopback, how to tell that
it is healthy, how to stop what ``up`` started, and where its data lives so that
``down`` keeps it and ``down --purge`` clears it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from app.config import FeedraySettings
from app.stack.process import (
    PidRecord,
    StackError,
    pid_alive,
    port_open,
    spawn_detached,
    terminate,
    terminate_session,
    wait_until,
)
from app.stack.ray_env import head_environment, write_settings_file


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


def _http_ok(url: str, timeout_s: float = 1.0, headers: dict[str, str] | None = None) -> bool:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


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

    def check_prerequisites(self) -> None:
        """Raise ``StackError`` when something this component needs is missing."""

    def after_ready(self) -> None:
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
                    f"(FEEDRAY_{self.name.upper()}__PORT=...)"
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


class KafkaBroker(Component):
    """Apache Kafka in KRaft mode (one node, broker + controller) on the installed Java."""

    name = "kafka"
    start_timeout_s = 90.0

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka.port, self.settings.kafka.controller_port]

    @property
    def libs_dir(self) -> Path:
        return self.settings.kafka.distribution_dir.expanduser().resolve() / "libs"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def check_prerequisites(self) -> None:
        java_version()
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise StackError(f"kafka: broker jars not found in {self.libs_dir}; run `make install`")

    def healthy(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if not port_open(self.host, self.settings.kafka.port):
            return False
        try:
            admin = AdminClient(self.settings.kafka.client_config(**{"log_level": 0}))
            return len(admin.list_topics(timeout=2).brokers) > 0
        except KafkaException:
            return False

    def server_properties(self) -> str:
        kafka = self.settings.kafka
        client_protocol = "SASL_PLAINTEXT" if kafka.uses_sasl else "PLAINTEXT"
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={kafka.host}:{kafka.controller_port}",
            f"listeners={client_protocol}://{kafka.host}:{kafka.port},CONTROLLER://{kafka.host}:{kafka.controller_port}",
            f"advertised.listeners={client_protocol}://{kafka.host}:{kafka.port},CONTROLLER://{kafka.host}:{kafka.controller_port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client_protocol}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client_protocol}:{client_protocol}",
            f"log.dirs={self.data_dir / 'log'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
        ]
        if kafka.uses_sasl:
            assert kafka.sasl_password is not None
            user, secret = kafka.sasl_username, kafka.sasl_password.get_secret_value()
            lines += [
                "sasl.enabled.mechanisms=PLAIN",
                "sasl.mechanism.inter.broker.protocol=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{user}" password="{secret}" user_{user}="{secret}";',
            ]
        return "\n".join(lines) + "\n"

    def _java(self, main_class: str, *args: str) -> list[str]:
        log4j = Path(__file__).resolve().parents[2] / "scripts" / "kafka" / "log4j2.properties"
        return [
            "java",
            "-Xms256m",
            f"-Xmx{self.settings.kafka.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.paths.logs / 'kafka'}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def launch(self) -> PidRecord:
        self.config_path.write_text(self.server_properties())
        if not (self.data_dir / "log" / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith(
                "-"
            ):  # the storage tool would read a leading '-' as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                           "-c", str(self.config_path)),
                capture_output=True, text=True,
            )  # fmt: skip
            if formatted.returncode != 0:
                raise StackError(f"kafka: storage format failed: {formatted.stderr.strip()[-300:]}")
        command = self._java("kafka.Kafka", str(self.config_path))
        pid = spawn_detached(command, self.log_path)
        return PidRecord(self.name, pid, self.address, time.time(), command)

    def after_ready(self) -> None:
        ensure_topics(self.settings)

    def purge(self) -> None:
        super().purge()
        shutil.rmtree(self.paths.logs / "kafka", ignore_errors=True)


class RayHead(Component):
    """A local Ray head node with its dashboard, started by ``ray start --head``."""

    name = "ray"
    start_timeout_s = 90.0

    @property
    def host(self) -> str:
        return self.settings.ray.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.ray.port, self.settings.ray.dashboard_port]

    def healthy(self) -> bool:
        return port_open(self.host, self.settings.ray.port) and _http_ok(
            f"{self.settings.ray.dashboard_url}/api/version", headers=ray_auth_headers()
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
        return _http_ok(f"http://{self.host}:{self.settings.mlflow.port}/health")

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


def ensure_topics(settings: FeedraySettings, timeout_s: float = 30.0) -> None:
    """Create the platform's topics that are missing and grow any with too few partitions."""
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    wanted = settings.kafka.topics.partitions()
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [
        NewTopic(name, num_partitions=count, replication_factor=1)
        for name, count in wanted.items()
        if name not in existing
    ]
    grow = [
        NewPartitions(name, count)
        for name, count in wanted.items()
        if name in existing and len(existing[name].partitions) < count
    ]
    futures = {**(admin.create_topics(missing) if missing else {}),
               **(admin.create_partitions(grow) if grow else {})}  # fmt: skip
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except Exception as error:  # noqa: BLE001 - KafkaException wraps the broker's reason
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise StackError(f"kafka: could not create topic {name}: {error}") from None


def java_version() -> int:
    """The installed Java's major version; ``StackError`` when missing or older than 17."""
    if shutil.which("java") is None:
        raise StackError("kafka: java not found; install Java 17 (Debian: openjdk-17-jre-headless)")
    output = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    try:
        version = output.split('"')[1]
        major = int(version.split(".")[1] if version.startswith("1.") else version.split(".")[0])
    except (IndexError, ValueError):
        raise StackError(
            f"kafka: cannot read the Java version from: {output.strip()[:120]}"
        ) from None
    if major < 17:
        raise StackError(f"kafka: Java {major} found; Apache Kafka 4 needs Java 17 or newer")
    return major


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


def _redact(command: list[str]) -> list[str]:
    redacted = list(command)
    for index, part in enumerate(redacted[:-1]):
        if part == "--requirepass":
            redacted[index + 1] = "***"
    return [("on" if part.startswith(">") else part) for part in redacted]


def all_components(settings: FeedraySettings) -> list[Component]:
    paths = StackPaths.from_settings(settings)
    return [cls(settings, paths) for cls in (RedisServer, KafkaBroker, RayHead, MlflowServer)]
