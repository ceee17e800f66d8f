"""One change at a time: ``feedray evaluate``'s two-tower and pipeline under setting variants.

    python -m bench.bench_eval_ablation lastfm PATH --out A.json \
        --variant base '{}' --variant t01 '{"two_tower": {"temperature": 0.1}}'

Each variant overrides sections of the default ``ModelSettings`` (``two_tower``, ``ranker``,
``features``, ``evaluation``), trains the two-tower (early stopping on validation) and,
unless ``--no-pipeline``, the full pipeline on the same split, and records validation
and test metrics of both. Variants whose two-tower settings match share one trained tower.
Choose among variants by the validation figures; the test ones are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.evaluation.metrics import Interactions
from app.models.config import ModelSettings
from data.importers.readers import read_dataset
from train.eval_inputs import build_inputs
from train.eval_pipeline import train_pipeline
from train.evaluate import make_split, pipeline_rows, train_two_tower

SECTIONS = ("features", "two_tower", "ranker", "evaluation")


def variant_settings(base: ModelSettings, overrides: dict) -> ModelSettings:
    """``base`` with each section of ``overrides`` merged into the same section."""
    update = {}
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}: {SECTIONS}")
        current = getattr(base, section)
        update[section] = type(current)(**(current.model_dump() | values))
    return base.model_copy(update=update)


def _metrics(entry: dict) -> dict:
    keep = ("recall@10", "ndcg@10", "hit@10", "recall@50", "recall@500")
    return {
        part: {k: round(entry[part][k], 4) for k in keep if k in entry[part]}
        for part in ("valid", "test")
    } | {k: entry[k] for k in ("best_epoch", "epochs_run", "train_s") if k in entry}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fmt")
    parser.add_argument("path")
    parser.add_argument("--split")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"))
    args = parser.parse_args(argv)
    base = ModelSettings()
    if args.split:
        base = variant_settings(base, {"evaluation": {"split": args.split}})
    dataset = read_dataset(args.fmt, args.path)
    split = make_split(dataset, base.evaluation)
    data = Interactions.from_split(split, dataset.items["item_id"].astype(str))
    results, towers = {}, {}
    for name, raw in args.variant or [("base", "{}")]:
        ms = variant_settings(base, json.loads(raw))
        key = json.dumps([ms.two_tower.model_dump(), ms.features.model_dump()], default=str)
        key += json.dumps(ms.evaluation.model_dump(), default=str)
        if key not in towers:
            inputs = build_inputs(
                data,
                split.train,
                dataset.items,
                ms.features,
                content_type=dataset.content_type,
                by_time=ms.evaluation.split == "time",
                seed=ms.evaluation.seed,
            )
            tower, entry = train_two_tower(data, inputs, ms, ms.evaluation, log=print)
            towers[key] = (tower, inputs, entry)
        tower, inputs, entry = towers[key]
        out = {"overrides": json.loads(raw), "two_tower": _metrics(entry)}
        if not args.no_pipeline:
            t0 = time.perf_counter()
            rows, made = pipeline_rows(dataset, split, data, tower, inputs, ms, log=print)
            pipe = train_pipeline(tower, data, inputs, rows, ms, log=print) | made
            out["pipeline"] = _metrics(pipe) | {"ranker_s": round(time.perf_counter() - t0, 1)}
        results[name] = out
        print(name, json.dumps(out), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        report = {
            "dataset": dataset.name,
            "split": base.evaluation.split,
            "command": "python -m bench.bench_eval_ablation " + " ".join(argv or []),
            "variants": results,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
