"""Two-tower retrieval training job: offline store -> Ray Train -> evaluation -> MLflow version.

    python -m train.retrieval --events PATH --catalogue PATH --epochs 5 --workers 2
    ray job submit --working-dir . -- python -m train.retrieval ...

Positive engagements (slot value >= positive_threshold) are the training pairs; the last
``eval_days`` are held out for Recall@K / NDCG@K against popularity and the champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from app.models.config import ModelSettings
from app.models.two_tower import TwoTower
from train.command_options import training_command
from train.common import (
    RETRIEVAL_COLUMNS,
    fit,
    ray_dataset,
)
from train.mlflow_run import flat_params, log_and_register


@dataclass
class JobResult:
    model: Any
    report: dict
    decision: Any
    registered: dict
    training_set: Any
    training_set_path: Path
    epochs_trained: int


def run_retrieval(
    settings=None,
    model_settings: ModelSettings | None = None,
    *,
    events: str | None = None,
    catalogue: str | None = None,
    training_set: str | None = None,
    run_name: str = "retrieval",
    storage_path: str | None = None,
    exclude_items: set[str] | None = None,
    tracking_uri: str | None = None,
    register: bool = True,
    set_aliases: bool = True,
) -> JobResult:
    """Train, evaluate and register a two-tower model (see the module docstring)."""
    from app.models.evaluation import evaluate_retrieval, gate
    from train.common import fit_options, start_job
    from train.mlflow_run import load_champion

    settings, model_settings, uri, ts, folder = start_job(
        settings,
        model_settings,
        tracking_uri,
        events=events,
        catalogue=catalogue,
        training_set=training_set,
        name=run_name,
        exclude_items=exclude_items,
    )
    train_ds = ray_dataset(
        ts.positives("train"),
        RETRIEVAL_COLUMNS,
        folder / "retrieval_train",
        shuffle_seed=model_settings.training.seed,
    )
    m = model_settings.two_tower.model_copy(update={"output_dim": settings.serving.embedding_dim})
    config = TwoTower(model_settings.features, m).config()
    t = model_settings.training
    model, result, last_epoch = fit(
        kind="two_tower",
        model_config=config,
        train_ds=train_ds,
        epochs=m.epochs,
        batch_size=m.batch_size,
        lr=m.learning_rate,
        name=run_name,
        **fit_options(settings, model_settings, storage_path),
    )
    champion = load_champion(uri, model_settings.retrieval_model_name) if register else None
    report = evaluate_retrieval(
        model, ts.eval, ts.users, ts.items, champion=champion, ks=(100, 500)
    )
    report["train"] = {
        k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))
    }
    decision = gate(report, model_settings.gate.retrieval_metric, model_settings.gate.tolerance)
    print(f"retrieval report: {report}", flush=True)
    registered: dict = {}
    if register:
        params = (
            flat_params("two_tower", m)
            | flat_params("features", model_settings.features)
            | flat_params("training", t)
            | {"training_set": str(folder), "train_positives": ts.meta["train_positives"]}
        )
        registered = log_and_register(
            uri=uri,
            experiment=model_settings.experiment,
            model_name=model_settings.retrieval_model_name,
            model=model,
            params=params,
            report=report,
            decision=decision,
            epochs_trained=last_epoch + 1,
            training_meta=ts.meta,
            gate_settings=model_settings.gate,
            run_name=run_name,
            set_aliases=set_aliases,
        )
    return JobResult(model, report, decision, registered, ts, folder, last_epoch + 1)


command = training_command(
    lambda: run_retrieval,
    "two_tower",
    "retrieval",
    "Train the two-tower retrieval model on Ray Train and register it in MLflow.",
)

if __name__ == "__main__":
    typer.run(command)
