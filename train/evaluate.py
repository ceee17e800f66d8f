"""``feedray evaluate FORMAT PATH``: the full-ranking protocol on an interaction dataset.

Reads the dataset with the importer's readers (the same ids and mapping as ``feedray
import``), splits it (``models.evaluation.split``: per-user random ratio, per-user time
order, or the given files), and reports, side by side, on the validation and test splits:

- ``popularity``: training interaction counts;
- ``ease``: EASE with its L2 weight picked on validation ``select_metric``;
- ``two_tower`` (retrieval alone): the project's ``TwoTower`` with its default settings
  (``models.two_tower``), trained with its own ``train_step`` (in-batch negatives, logQ)
  for up to ``max_epochs`` epochs; after each epoch the validation ``select_metric`` is
  measured and training stops after ``patience`` epochs without a better one; the best
  epoch's weights are kept. Also its recall@``retrieval_k`` (the ranker's ceiling);
- ``pipeline``: that two-tower's top ``retrieval_k`` re-ranked by the project's DLRM
  ``Ranker`` (``train.eval_pipeline``: trained on the training split, epoch selected on
  validation); ``train_s`` counts both stages.

The test split is scored once per model, at the end, with the selected model. Every model
ranks all items, with the user's training items (and, on test, validation items) excluded.
Training runs in this process (``torch``, no Ray Train), so each run takes minutes on a CPU.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from app.evaluation.baselines import EASE, Popularity
from app.evaluation.metrics import Interactions, Scorer, full_ranking
from app.evaluation.splits import Split, given_split, ratio_split, time_split
from app.models.config import EvaluationSettings, ModelSettings, TwoTowerSettings
from app.models.optim import SplitAdam
from app.models.two_tower import TwoTower, embed, train_step
from data.importers.readers import Dataset, DatasetError, read_dataset
from train.early_stop import EarlyStop
from train.eval_inputs import TowerInputs, build_inputs
from train.eval_pipeline import (
    RankerRows,
    fold_rows,
    ranker_rows,
    strong_matrix,
    train_pipeline,
)
from train.eval_report import markdown_table, plot_recall


def make_split(dataset: Dataset, ev: EvaluationSettings) -> Split:
    """The split ``ev.split`` names (``given`` needs a pre-split dataset)."""
    inter = dataset.interactions
    if ev.split == "given":
        if not dataset.pre_split:
            raise DatasetError("split 'given' needs a pre-split dataset (train/valid/test files)")
        return given_split(*(inter[inter["part"] == p] for p in ("train", "valid", "test")))
    if ev.split == "time":
        return time_split(inter, ev.ratios)
    if ev.split == "random":
        return ratio_split(inter, ev.ratios, seed=ev.seed)
    raise DatasetError(f"unknown split {ev.split!r}: random, time or given")


def _timed(score: Scorer, data: Interactions, part: str, ks) -> dict[str, float]:
    t0 = time.perf_counter()
    out = full_ranking(score, data, part, ks)
    out["eval_s"] = round(time.perf_counter() - t0, 3)
    return out


def evaluate_ease(data: Interactions, ev: EvaluationSettings) -> dict[str, Any]:
    """EASE per lambda on validation; the best one on test."""
    best, curve = None, {}
    t0 = time.perf_counter()
    for lam in ev.ease_lambdas:
        model = EASE(data.train, lam)
        valid = full_ranking(model, data, "valid", ev.ks)
        curve[str(lam)] = valid[ev.select_metric]
        if best is None or valid[ev.select_metric] > best[2][ev.select_metric]:
            best = (lam, model, valid)
    assert best is not None
    lam, model, valid = best
    return {
        "lambda": lam,
        "valid_curve": curve,
        "select_s": round(time.perf_counter() - t0, 3),
        "valid": valid,
        "test": _timed(model, data, "test", ev.ks),
    }


def tower_scorer(model: TwoTower, inputs: TowerInputs) -> Scorer:
    items = embed(model.content, inputs.items)
    users = embed(model.user, inputs.users)

    def score(u: np.ndarray) -> np.ndarray:
        return (users[torch.from_numpy(u)] @ items.T).numpy()

    return score


def train_two_tower(
    data: Interactions,
    inputs: TowerInputs,
    model_settings: ModelSettings,
    ev: EvaluationSettings,
    log=print,
) -> tuple[TwoTower, dict[str, Any]]:
    """Train with early stopping on validation ``ev.select_metric`` (see the module doc)."""
    s: TwoTowerSettings = model_settings.two_tower
    torch.manual_seed(ev.seed)
    model = TwoTower(model_settings.features, s)
    opt = SplitAdam(model, lr=s.learning_rate, weight_decay=s.weight_decay)
    n = next(iter(inputs.pairs.values())).shape[0]
    gen = torch.Generator().manual_seed(ev.seed)
    max_epochs = ev.max_epochs or s.epochs
    stop = EarlyStop(ev.select_metric, ev.patience)
    for _ in range(max_epochs):
        perm = torch.randperm(n, generator=gen)
        losses = []
        for lo in range(0, n - 1, s.batch_size):
            idx = perm[lo : lo + s.batch_size]
            if len(idx) < 2:
                continue
            losses.append(train_step(model, {k: v[idx] for k, v in inputs.pairs.items()}, opt))
        value = full_ranking(tower_scorer(model, inputs), data, "valid", ev.ks)[ev.select_metric]
        done = stop.update(model, losses, value)
        log(f"two_tower {stop.last()}")
        if done:
            break
    train_s = stop.elapsed()
    stop.restore(model)
    score = tower_scorer(model, inputs)
    ks = tuple(sorted(set(ev.ks) | {ev.retrieval_k}))
    return model, {
        "settings": s.model_dump(mode="json"),
        **stop.summary(),
        "train_s": round(train_s, 3),
        "valid": full_ranking(score, data, "valid", ev.ks),
        "test": _timed(score, data, "test", ks),
    }


def pipeline_rows(
    dataset: Dataset,
    split: Split,
    data: Interactions,
    tower: TwoTower,
    inputs: TowerInputs,
    model_settings: ModelSettings,
    log=print,
) -> tuple[RankerRows, dict[str, Any]]:
    """The ranker's training rows (``train.eval_pipeline``) and how they were made.

    With ``ranker_fold`` f > 0, each user's training items are cut (randomly, or its latest
    on the time split) into 1 - f and f; a second two-tower is trained on the first part
    (early stopping on the fold) and the fold's pairs are the positives, so the ranker
    learns to pick unseen items from retrieval candidates, as on validation and test.
    Otherwise the positives are every training pair, scored by ``tower``.
    """
    ev = model_settings.evaluation
    t0 = time.perf_counter()
    strong = strong_matrix(data, split.train, dataset)
    if ev.ranker_fold <= 0:
        rows = ranker_rows(tower, data, inputs, strong, ev)
        return rows, {"positives": "training pairs", "rows_s": round(time.perf_counter() - t0, 3)}
    ratios = (1.0 - ev.ranker_fold, ev.ranker_fold, 0.0)
    if ev.split == "time":
        cut = time_split(split.train, ratios)
    else:
        cut = ratio_split(split.train, ratios, seed=ev.seed)
    fold = data.recoded(cut.train, cut.valid)
    fold_inputs = build_inputs(
        fold,
        cut.train,
        dataset.items,
        model_settings.features,
        content_type=dataset.content_type,
        by_time=ev.split == "time",
        seed=ev.seed,
    )
    fold_tower, entry = train_two_tower(fold, fold_inputs, model_settings, ev, log)
    rows = fold_rows(fold_tower, fold, fold_inputs, strong, ev)
    return rows, {
        "positives": f"a {ev.ranker_fold} fold of the training split",
        "fold_tower_best_epoch": entry["best_epoch"],
        "rows_s": round(time.perf_counter() - t0, 3),
    }


def run_evaluation(
    dataset: Dataset,
    model_settings: ModelSettings,
    *,
    models: tuple[str, ...] = ("popularity", "ease", "two_tower", "pipeline"),
    namespace: str = "",
    log=print,
) -> dict[str, Any]:
    """The report (see the module docstring) as a JSON-ready dict."""
    ev = model_settings.evaluation
    split = make_split(dataset, ev)
    data = Interactions.from_split(split, dataset.items["item_id"].astype(str))
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "protocol": {
            "split": ev.split,
            "ratios": list(ev.ratios) if ev.split != "given" else None,
            "seed": ev.seed,
            "sizes": split.sizes(),
            "users": len(data.users),
            "items": len(data.items),
            "ranking": "full, training items excluded (and validation items on test)",
            "select_metric": f"valid {ev.select_metric}",
        },
        "models": {},
    }
    if "popularity" in models:
        t0 = time.perf_counter()
        pop = Popularity(data.train)
        fit_s = time.perf_counter() - t0
        report["models"]["popularity"] = {
            "train_s": round(fit_s, 3),
            "valid": full_ranking(pop, data, "valid", ev.ks),
            "test": _timed(pop, data, "test", ev.ks),
        }
    if "ease" in models:
        report["models"]["ease"] = evaluate_ease(data, ev)
        log(f"ease lambda {report['models']['ease']['lambda']}")
    if "two_tower" in models or "pipeline" in models:
        t0 = time.perf_counter()
        inputs = build_inputs(
            data,
            split.train,
            dataset.items,
            model_settings.features,
            namespace=namespace,
            content_type=dataset.content_type,
            by_time=ev.split == "time",
            seed=ev.seed,
        )
        log(f"two_tower inputs in {time.perf_counter() - t0:.1f}s")
        tower, report["models"]["two_tower"] = train_two_tower(
            data, inputs, model_settings, ev, log
        )
        if "pipeline" in models:
            rows, made = pipeline_rows(dataset, split, data, tower, inputs, model_settings, log)
            entry = train_pipeline(tower, data, inputs, rows, model_settings, log) | made
            tt_s = report["models"]["two_tower"]["train_s"]
            entry["train_s"] = round(tt_s + made["rows_s"] + entry["ranker_train_s"], 3)
            report["models"]["pipeline"] = entry
    return report


def evaluate_command(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="recbole, lastfm or table.")],
    path: Annotated[str, typer.Argument(help="Dataset file or folder (read in place).")],
    split: Annotated[
        str | None, typer.Option(help="random | time | given (default models.evaluation.split).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Split and training seed.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Two-tower epoch cap.")] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated: popularity, ease, two_tower, pipeline.")
    ] = "popularity,ease,two_tower,pipeline",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    out: Annotated[str | None, typer.Option(help="Also write the JSON report here.")] = None,
    plot: Annotated[str | None, typer.Option(help="Write test Recall@K vs K (PNG) here.")] = None,
) -> None:
    """Full-ranking evaluation: popularity, EASE, the two-tower and the full pipeline."""
    from app.config import get_settings
    from app.models.config import resolve_model_settings

    model_settings = resolve_model_settings(get_settings())
    update = {"split": split, "seed": seed, "max_epochs": max_epochs}
    ev = model_settings.evaluation.model_copy(
        update={k: v for k, v in update.items() if v is not None}
    )
    model_settings = model_settings.model_copy(update={"evaluation": ev})
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if as_json else print
    try:
        dataset = read_dataset(fmt, path)
        report = run_evaluation(
            dataset, model_settings, models=tuple(m.strip() for m in models.split(",")), log=log
        )
    except DatasetError as error:
        typer.echo(f"feedray evaluate: {error}", err=True)
        raise typer.Exit(code=1) from None
    report["command"] = " ".join(["feedray", *sys.argv[1:]])
    report["host"] = {"python": platform.python_version(), "torch": torch.__version__}
    text = json.dumps(report, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    if plot:
        plot_recall(report, plot)
    if as_json:
        typer.echo(text)
    else:
        typer.echo(markdown_table(report))
