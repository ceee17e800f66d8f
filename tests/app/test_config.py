"""Configuration: defaults, environment and YAML overrides, validation messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import DEFAULT_SIGNAL_WEIGHTS, FeedraySettings
from app.schemas import EventType


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FEEDRAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray feedray.yaml


def test_defaults_are_local_and_match_the_seed() -> None:
    settings = FeedraySettings()
    assert settings.redis.host == "127.0.0.1"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.topics.engagement == "user.engagement.events"
    assert settings.kafka.topics.published == "media.published"
    assert settings.experiments.canary_share == 0.05
    assert settings.trending.refresh_interval_s == 900
    assert settings.serving.candidate_count == 500
    assert settings.latency.total_ms == 150 and settings.latency.features_ms == 5
    assert set(settings.events.signal_weights) == set(EventType)
    assert len(settings.events.signal_weights) == 10


def test_signal_weights_order_the_seed_signals() -> None:
    weights = DEFAULT_SIGNAL_WEIGHTS
    strongest = max(weights, key=weights.__getitem__)
    assert strongest == EventType.MEDIA_COMPLETED
    assert weights[EventType.MEDIA_STARTED] > 0  # weak positive
    for negative in (
        EventType.MEDIA_PAUSED_EARLY,
        EventType.MEDIA_DISLIKED,
        EventType.MEDIA_SKIPPED,
    ):
        assert weights[negative] < 0
    # mild negative is milder than moderate negatives
    assert weights[EventType.MEDIA_PAUSED_EARLY] > weights[EventType.MEDIA_SKIPPED]
    assert weights[EventType.MEDIA_PAUSED_EARLY] > weights[EventType.MEDIA_DISLIKED]


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDRAY_REDIS__PORT", "6390")
    monkeypatch.setenv("FEEDRAY_EXPERIMENTS__CANARY_SHARE", "0.1")
    monkeypatch.setenv("FEEDRAY_KAFKA__TOPICS__ENGAGEMENT_PARTITIONS", "8")
    monkeypatch.setenv("FEEDRAY_EVENTS__SIGNAL_WEIGHTS__MEDIA_LIKED", "0.9")
    settings = FeedraySettings()
    assert settings.redis.port == 6390
    assert settings.experiments.canary_share == 0.1
    assert settings.kafka.topics.partitions()["user.engagement.events"] == 8
    assert settings.events.signal_weights[EventType.MEDIA_LIKED] == 0.9
    assert settings.events.signal_weights[EventType.MEDIA_COMPLETED] == 1.0


def test_yaml_file_overrides_defaults_and_environment_beats_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "custom.yaml"
    config.write_text(
        "redis:\n  port: 7000\nserving:\n  diversity_default: 0.5\n"
        "kafka:\n  topics:\n    dead_letter: my.dlq\n"
    )
    monkeypatch.setenv("FEEDRAY_CONFIG_FILE", str(config))
    settings = FeedraySettings()
    assert settings.redis.port == 7000
    assert settings.serving.diversity_default == 0.5
    assert settings.kafka.topics.dead_letter == "my.dlq"
    monkeypatch.setenv("FEEDRAY_REDIS__PORT", "7001")
    assert FeedraySettings().redis.port == 7001


def test_feedray_yaml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "feedray.yaml").write_text("trending:\n  refresh_interval_s: 60\n")
    assert FeedraySettings().trending.refresh_interval_s == 60


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDRAY_CONFIG_FILE", "/nonexistent/feedray.yaml")
    with pytest.raises(FileNotFoundError, match=re.escape("/nonexistent/feedray.yaml")):
        FeedraySettings()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("FEEDRAY_EXPERIMENTS__CANARY_SHARE", "1.5", "canary_share"),
        ("FEEDRAY_REDIS__PORT", "not-a-port", "port"),
        ("FEEDRAY_SERVING__CANDIDATE_COUNT", "0", "candidate_count"),
    ],
)
def test_invalid_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        FeedraySettings()


def test_two_components_on_one_port_is_rejected() -> None:
    with pytest.raises(ValidationError, match="both use port 6379"):
        FeedraySettings(ray={"port": 6379})


def test_signal_weight_overrides_keep_the_other_defaults_and_reject_unknown_events() -> None:
    weights = FeedraySettings(
        events={"signal_weights": {"media_completed": 2.0}}
    ).events.signal_weights
    assert weights[EventType.MEDIA_COMPLETED] == 2.0
    assert weights[EventType.MEDIA_SKIPPED] == DEFAULT_SIGNAL_WEIGHTS[EventType.MEDIA_SKIPPED]
    with pytest.raises(ValidationError, match="media_teleported"):
        FeedraySettings(events={"signal_weights": {"media_teleported": 1.0}})


def test_kafka_client_config_carries_credentials_only_when_configured() -> None:
    assert "sasl.username" not in FeedraySettings().kafka.client_config()
    config = FeedraySettings(
        kafka={"sasl_username": "svc", "sasl_password": "pw"}
    ).kafka.client_config()
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.username"] == "svc" and config["sasl.password"] == "pw"
    assert "pw" not in FeedraySettings(redis={"password": "pw"}).model_dump_json()
