"""``feedray train retrieval|ranking``: options left unset fall back to ``settings.models``."""

from __future__ import annotations

import pytest

import app.config
from app.config import FeedraySettings
from train import ranking, retrieval

SETTINGS = FeedraySettings(
    models={
        "two_tower": {"epochs": 3, "batch_size": 64, "learning_rate": 0.01},
        "ranker": {"epochs": 2, "batch_size": 32, "learning_rate": 0.02},
        "training": {"num_workers": 2, "cpus_per_worker": 0.5},
    }
)


def _run(monkeypatch: pytest.MonkeyPatch, module, runner: str, **options):
    seen = {}

    def run(settings, model_settings, **kwargs):
        seen.update(settings=settings, model_settings=model_settings, **kwargs)
        return type("Out", (), {"registered": None})()

    monkeypatch.setattr(app.config, "get_settings", lambda: SETTINGS)
    monkeypatch.setattr(module, runner, run)
    defaults = {
        "events": None,
        "catalogue": None,
        "training_set": None,
        "epochs": None,
        "workers": None,
        "cpus_per_worker": None,
        "batch_size": None,
        "lr": None,
        "run_name": "run",
        "no_register": True,
    }
    module.command(**(defaults | options))
    assert seen["settings"] is SETTINGS and seen["register"] is False
    return seen["model_settings"]


def test_retrieval_command_takes_unset_options_from_the_settings(monkeypatch):
    model_settings = _run(monkeypatch, retrieval, "run_retrieval")
    assert model_settings.two_tower == SETTINGS.models.two_tower
    assert model_settings.training == SETTINGS.models.training


def test_retrieval_command_options_override_the_settings(monkeypatch):
    model_settings = _run(monkeypatch, retrieval, "run_retrieval", epochs=5, workers=1)
    assert (model_settings.two_tower.epochs, model_settings.two_tower.batch_size) == (5, 64)
    assert (model_settings.training.num_workers, model_settings.training.cpus_per_worker) == (
        1,
        0.5,
    )


def test_ranking_command_takes_unset_options_from_the_settings(monkeypatch):
    model_settings = _run(monkeypatch, ranking, "run_ranking", lr=0.5)
    ranker = model_settings.ranker
    assert (ranker.epochs, ranker.batch_size, ranker.learning_rate) == (2, 32, 0.5)
    assert model_settings.training == SETTINGS.models.training
