"""Reports of ``feedray evaluate`` as a Markdown table and a Recall@K plot.

``python -m train.eval_report A.json [B.json ...] [--plot P.png]`` merges the models of
reports on the same dataset and protocol (a later file's model replaces an earlier one's),
prints the table EVALUATION.md holds and writes the plot. Each row is one model's test
metrics, the epoch selected on validation, wall seconds to train and to score the test split.
Reports of several split / training seeds (``--seed``) are merged per seed, then each
metric is given as the mean ± the sample standard deviation (ddof 1) over the seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = (
    "recall@10",
    "ndcg@10",
    "hit@10",
    "mrr@10",
    "recall@20",
    "ndcg@20",
    "recall@50",
    "ndcg@50",
    "recall@500",
)


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report with every model of ``reports``; they must share dataset and protocol."""
    first = reports[0]
    merged = {**first, "models": {}, "commands": []}
    for r in reports:
        if (r["dataset"], r["protocol"]) != (first["dataset"], first["protocol"]):
            raise ValueError(f"{r['dataset']} {r['protocol']} differs from the first report")
        merged["models"].update(r["models"])
        merged["commands"].extend(r.get("commands") or [r.get("command")])
    return merged


def _protocol_key(report: dict[str, Any]) -> str:
    p = {k: v for k, v in report["protocol"].items() if k not in ("seed", "sizes")}
    return json.dumps([report["dataset"], p], sort_keys=True)


def merge_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """``merge_reports`` per seed, then per model and test metric the mean over the seeds
    (``test``) and the sample standard deviation (``test_std``, with more than one seed).
    The reports must share dataset and protocol apart from the seed."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in reports:
        if _protocol_key(r) != _protocol_key(reports[0]):
            raise ValueError(f"{r['dataset']} {r['protocol']} differs from the first report")
        groups.setdefault(r["protocol"]["seed"], []).append(r)
    runs = [merge_reports(g) for _, g in sorted(groups.items())]
    if len(runs) == 1:
        return runs[0]
    out = {**runs[0], "models": {}, "commands": [c for r in runs for c in r["commands"]]}
    out["protocol"] = {**runs[0]["protocol"], "seed": sorted(groups)}
    for name in runs[0]["models"]:
        entries = [r["models"][name] for r in runs if name in r["models"]]
        metrics = [k for k in entries[0]["test"] if all(k in e["test"] for e in entries)]
        values = {k: np.array([e["test"][k] for e in entries], dtype=float) for k in metrics}
        train_s = [e.get("train_s", e.get("select_s")) for e in entries]
        out["models"][name] = {
            "seeds": len(entries),
            "test": {
                k: round(float(v.mean()), 3 if k == "eval_s" else 6) for k, v in values.items()
            },
            "test_std": {k: float(v.std(ddof=1)) for k, v in values.items() if len(v) > 1},
            "train_s": round(float(np.mean([t for t in train_s if t is not None] or [0])), 1),
            "selected": ", ".join(_selected(e) for e in entries),
        }
    return out


def _selected(entry: dict[str, Any]) -> str:
    if "selected" in entry:
        return entry["selected"]
    if "lambda" in entry:
        return f"λ={entry['lambda']}"
    if "best_epoch" in entry:
        blend = f" w={entry['blend']}" if "blend" in entry else ""
        return f"epoch {entry['best_epoch']}/{entry['epochs_run']}{blend}"
    return "-"


def _cell(entry: dict[str, Any], column: str) -> str:
    if column not in entry["test"]:
        return "-"
    std = entry.get("test_std", {}).get(column)
    mean = f"{entry['test'][column]:.4f}"
    return mean if std is None else f"{mean} ± {std:.4f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The test metrics of every model of ``report`` as a Markdown table."""
    head = ["model", *COLUMNS, "selected", "train s", "test eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in report["models"].items():
        t = entry["test"]
        cells = [_cell(entry, c) for c in COLUMNS]
        train_s = entry.get("train_s", entry.get("select_s", "-"))
        row = [name, *cells, _selected(entry), str(train_s), str(t.get("eval_s", "-"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_recall(report: dict[str, Any], path: str) -> None:
    """Test Recall@K against K (log scale) for every model of ``report``, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, entry in report["models"].items():
        ks = sorted(int(k.split("@")[1]) for k in entry["test"] if k.startswith("recall@"))
        mean = [entry["test"][f"recall@{k}"] for k in ks]
        std = [entry.get("test_std", {}).get(f"recall@{k}", 0.0) for k in ks]
        ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=name)
    p = report["protocol"]
    ax.set(
        xscale="log",
        xlabel="K",
        ylabel="test Recall@K",
        title=f"{report['dataset']} ({p['split']})",
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    merged = merge_seeds([json.loads(open(p).read()) for p in args.reports])
    p = merged["protocol"]
    print(
        f"**{merged['dataset']}**, split `{p['split']}` {p['ratios']}, seed {p['seed']}, "
        f"sizes {p['sizes']}, {p['users']} users, {p['items']} items\n"
    )
    print(markdown_table(merged))
    if args.plot:
        plot_recall(merged, args.plot)


if __name__ == "__main__":
    main()
