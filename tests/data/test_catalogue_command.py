"""``feedray catalogue``: options left out fall back to ``settings.catalogue``."""

from __future__ import annotations

import sys

import typer
from typer.testing import CliRunner

from app.config import CatalogueSettings, FeedraySettings
from data.catalogue import CatalogueReport, catalogue_command


def _invoke(monkeypatch, args: list[str]) -> CatalogueSettings:
    module = sys.modules[catalogue_command.__module__]
    seen: dict[str, CatalogueSettings] = {}

    def run_catalogue(settings, until_idle, *, config):
        seen["config"] = config
        return CatalogueReport()

    monkeypatch.setattr(module, "run_catalogue", run_catalogue)
    settings = FeedraySettings(
        catalogue=CatalogueSettings(group_id="catalogue-from-config", root="/tmp/from-config")
    )
    monkeypatch.setattr(module, "get_settings", lambda: settings)
    app = typer.Typer()
    app.command()(catalogue_command)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return seen["config"]


def test_catalogue_honours_the_catalogue_settings(monkeypatch) -> None:
    config = _invoke(monkeypatch, [])
    assert (config.group_id, config.root) == ("catalogue-from-config", "/tmp/from-config")


def test_catalogue_options_override_the_settings(monkeypatch) -> None:
    config = _invoke(monkeypatch, ["--group", "c-cli", "--root", "/tmp/c-cli"])
    assert (config.group_id, config.root) == ("c-cli", "/tmp/c-cli")
