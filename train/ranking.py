"""Ranking (TorchRec DLRM, three heads) training job: offline store -> Ray Train -> MLflow.

    python -m train.ranking --events PATH --catalogue PATH --epochs 4 --workers 2
    ray job submit --working-dir . -- python -m train.ranking ...

Every started slot is an example with the three head labels. The dense feature
``retrieval_score`` is the two-tower cosine of the retrieval model passed in (or the
registry's retrieval ``champion``); 0 when there is none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import typer

from app.models.config import ModelSettings, default_head_weights
from app.models.ranker import Ranker
from train.command_options import training_command
from train.common import (
    RANKING_COLUMNS,
    fit,
    ray_dataset,
)
from train.mlflow_run import flat_params, log_and_register
from train.retrieval import JobResult


def add_retrieval_score(frame: pd.DataFrame, retrieval_model) -> pd.DataFrame:
    """``retrieval_score`` column: cosine of the user and content tower embeddings (0 without a
    model)."""
    from app.models.features import ITEM_COLUMNS, USER_COLUMNS, frame_columns
    from app.models.two_tower import embed

    frame = frame.copy()
    if retrieval_model is None or len(frame) == 0:
        frame["retrieval_score"] = np.zeros(len(frame), np.float32)
        return frame
    u = embed(retrieval_model.user, frame_columns(frame, USER_COLUMNS))
    v = embed(retrieval_model.content, frame_columns(frame, ITEM_COLUMNS))
    frame["retrieval_score"] = (u * v).sum(1).numpy().astype(np.float32)
    return frame


def run_ranking(
    settings=None,
    model_settings: ModelSettings | None = None,
    *,
    events: str | None = None,
    catalogue: str | None = None,
    training_set: str | None = None,
    run_name: str = "ranking",
    storage_path: str | None = None,
    retrieval_model=None,
    tracking_uri: str | None = None,
    register: bool = True,
    set_aliases: bool = True,
) -> JobResult:
    from app.models.evaluation import evaluate_ranking, gate
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
    )
    if retrieval_model is None and register:
        retrieval_model = load_champion(uri, model_settings.retrieval_model_name)
    ts.train = add_retrieval_score(ts.train, retrieval_model)
    ts.eval = add_retrieval_score(ts.eval, retrieval_model)
    train_ds = ray_dataset(
        ts.train,
        RANKING_COLUMNS,
        folder / "ranking_train",
        shuffle_seed=model_settings.training.seed,
    )
    r = model_settings.ranker
    weights = r.head_weights or default_head_weights(settings.events.signal_weights)
    config = Ranker(model_settings.features, r, weights).config()
    t = model_settings.training
    model, result, last_epoch = fit(
        kind="ranker",
        model_config=config,
        train_ds=train_ds,
        epochs=r.epochs,
        batch_size=r.batch_size,
        lr=r.learning_rate,
        name=run_name,
        **fit_options(settings, model_settings, storage_path),
    )
    champion = load_champion(uri, model_settings.ranking_model_name) if register else None
    report = evaluate_ranking(model, ts.eval, ts.items, champion=champion)
    report["train"] = {
        k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))
    }
    decision = gate(report, model_settings.gate.ranking_metric, model_settings.gate.tolerance)
    print(f"ranking report: {report}", flush=True)
    registered: dict = {}
    if register:
        params = (
            flat_params("ranker", r)
            | flat_params("features", model_settings.features)
            | flat_params("training", t)
            | {"training_set": str(folder), "retrieval_score": retrieval_model is not None}
        )
        registered = log_and_register(
            uri=uri,
            experiment=model_settings.experiment,
            model_name=model_settings.ranking_model_name,
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
    lambda: run_ranking,
    "ranker",
    "ranking",
    "Train the TorchRec DLRM ranker on Ray Train and register it in MLflow.",
)

if __name__ == "__main__":
    typer.run(command)
