"""``feedray ingest``: options left unset fall back to the settings."""

from __future__ import annotations

import pytest

import data.ingest.command as ingest
from app.config import FeedraySettings


class _Slept(Exception):
    pass


@pytest.mark.parametrize(("option", "expected"), [(None, 42.0), (7.0, 7.0)])
def test_schedule_interval_defaults_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, option: float | None, expected: float
) -> None:
    settings = FeedraySettings(ingest={"interval_s": 42.0})
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise _Slept  # one scheduled period is enough

    monkeypatch.setattr(ingest, "get_settings", lambda: settings)
    monkeypatch.setattr(ingest, "ingest_streams", lambda *args: iter(()))
    monkeypatch.setattr(ingest.time, "sleep", sleep)
    with pytest.raises(_Slept):
        ingest.ingest_command(once=False, interval_s=option)
    assert slept and expected - 1.0 < slept[0] <= expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], ("exposures",)), (["--topic", "engagement", "--topic", "exposures"], None)],
)
def test_topics_default_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: tuple[str, ...] | None
) -> None:
    from typer.testing import CliRunner

    import app.cli as feedray_cli

    settings = FeedraySettings(ingest={"topics": ("exposures",)})
    seen: list = []
    monkeypatch.setattr(ingest, "get_settings", lambda: settings)
    monkeypatch.setattr(ingest, "ingest_streams", lambda *args: seen.append(args) or iter(()))
    feedray_cli._mount_ingest()
    result = CliRunner().invoke(feedray_cli.cli, ["ingest", "--once", *argv])
    assert result.exit_code == 0, result.output
    assert seen[0][1] == (expected or ("engagement", "exposures"))
    assert seen[0][2] == {"engagement": None, "exposures": None}
