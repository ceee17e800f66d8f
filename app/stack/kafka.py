"""The Kafka broker of the local stack (KRaft, one node) and the platform's topics."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from app.config import FeedraySettings
from app.stack.component import Component
from app.stack.process import PidRecord, StackError, port_open, spawn_detached


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
