"""Hyper-parameter search with Ray Tune (ASHA) over the main knobs of either model.

    python -m train.tune --model retrieval --samples 8 --epochs 6 --training-set PATH
    ray job submit --working-dir . -- python -m train.tune --model ranking ...

Each trial trains in its Tune actor with the same per-epoch step as the Ray Train job
(``train.common``), reports the held-out loss after every epoch with ``tune.report`` (ASHA
stops the weak trials early), and the best configuration is printed and returned; train the
final model with it through ``train.retrieval`` / ``train.ranking`` (which register it).
(A Train-inside-Tune trial, ``TorchTrainer`` + ``TuneReportCallback``, would add a
controller and a worker per trial: too heavy for small clusters.)
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.models.config import ModelSettings, resolve_model_settings


def _trial(config: dict) -> None:
    import numpy as np
    import torch
    from ray import tune

    from app.models import ranker as rk
    from app.models import two_tower as tt
    from app.models.config import FeatureSettings
    from app.models.features import frame_columns
    from app.models.optim import SplitAdam
    from data.training_sets import load_training_set
    from train.common import RANKING_COLUMNS, RETRIEVAL_COLUMNS, _eval_loss
    from train.ranking import add_retrieval_score

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ts = load_training_set(config["training_set"])
    base = config["base"]
    if config["model"] == "retrieval":
        settings = base["two_tower"] | {
            k: config[k] for k in ("learning_rate", "temperature", "id_dropout") if k in config
        }
        model = tt.TwoTower(FeatureSettings(**base["features"]), tt.TwoTowerSettings(**settings))
        train, val, names, step = (
            ts.positives("train"),
            ts.positives("eval"),
            RETRIEVAL_COLUMNS,
            tt.train_step,
        )
        kind = "two_tower"
    else:
        settings = base["ranker"] | {
            k: config[k] for k in ("learning_rate", "embedding_dim") if k in config
        }
        model = rk.Ranker(FeatureSettings(**base["features"]), rk.RankerSettings(**settings))
        train, val = add_retrieval_score(ts.train, None), add_retrieval_score(ts.eval, None)
        names, step, kind = RANKING_COLUMNS, rk.train_step, "ranker"
    cols, vcols = frame_columns(train, names), frame_columns(val, names)
    opt = SplitAdam(model, lr=settings["learning_rate"])
    bs, n = settings["batch_size"], len(train)
    for epoch in range(config["epochs"]):
        perm = torch.randperm(n)
        for lo in range(0, n - bs + 1, bs):
            idx = perm[lo : lo + bs]
            step(model, {k: v[idx] for k, v in cols.items()}, opt)
        batches = (
            {k: v[lo : lo + bs] for k, v in vcols.items()} for lo in range(0, len(val) - bs + 1, bs)
        )
        tune.report(
            {"epoch": epoch, "val_loss": float(np.float64(_eval_loss(model, kind, batches)))}
        )


def run_tune(
    settings=None,
    model_settings: ModelSettings | None = None,
    *,
    model: str = "retrieval",
    training_set: str,
    samples: int = 8,
    epochs: int = 4,
    storage_path: str | None = None,
) -> dict[str, Any]:
    """ASHA search; returns {"best_config", "best_val_loss", "trials"}."""
    import json
    from pathlib import Path

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from app.config import get_settings
    from app.models.config import FeatureSettings
    from app.ray_runtime import connect_ray
    from train.common import default_storage

    settings = settings or get_settings()
    model_settings = model_settings or resolve_model_settings(settings)
    connect_ray(settings)
    meta = json.loads((Path(training_set) / "meta.json").read_text())
    if meta.get("features"):  # the bucket sizes the set's hashed ids were built with
        model_settings = model_settings.model_copy(
            update={"features": FeatureSettings(**meta["features"])}
        )
    space: dict[str, Any] = {"learning_rate": tune.loguniform(1e-3, 2e-2)}
    if model == "retrieval":
        space |= {
            "temperature": tune.choice([0.03, 0.05, 0.1]),
            "id_dropout": tune.uniform(0.0, 0.4),
        }
    else:
        space |= {"embedding_dim": tune.choice([8, 16, 32])}
    param_space = space | {
        "model": model,
        "training_set": str(Path(training_set).resolve()),
        "epochs": epochs,
        "base": {
            "features": model_settings.features.model_dump(mode="json"),
            "two_tower": model_settings.two_tower.model_dump(mode="json"),
            "ranker": model_settings.ranker.model_dump(mode="json"),
        },
    }
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=samples,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=2
            ),
        ),
        run_config=tune.RunConfig(
            name=f"tune-{model}", storage_path=str(default_storage(settings, storage_path))
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    keys = [k for k in space]
    out = {
        "best_config": {k: best.config[k] for k in keys},
        "best_val_loss": best.metrics["val_loss"],
        "trials": [
            {
                **{k: r.config[k] for k in keys},
                "val_loss": r.metrics.get("val_loss"),
                "epochs": r.metrics.get("training_iteration"),
            }
            for r in results
        ],
    }
    print(f"best: {out['best_config']} val_loss={out['best_val_loss']:.4f}", flush=True)
    return out


def command(
    training_set: Annotated[
        str, typer.Option(help="A saved training set folder (train.retrieval builds one).")
    ],
    model: Annotated[str, typer.Option(help="retrieval | ranking")] = "retrieval",
    samples: Annotated[int, typer.Option()] = 8,
    epochs: Annotated[int, typer.Option()] = 4,
) -> None:
    """Ray Tune (ASHA) search over learning rate, temperature, id dropout / embedding size."""
    out = run_tune(model=model, training_set=training_set, samples=samples, epochs=epochs)
    typer.echo(out["best_config"])


if __name__ == "__main__":
    typer.run(command)
