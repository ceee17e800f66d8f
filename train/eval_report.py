"""Reports of ``feedray evaluate`` as a Markdown table and a Recall@K plot.

``python -m train.eval_report A.json [B.json ...] [--plot P.png]`` merges the models of
reports on the same dataset and protocol (a later file's model replaces an earlier one's),
prints the table EVALUATION.md holds and writes the plot. Each row is one model's test
metrics, the epoch selected on validation, wall seconds to train and to score the test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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


def _selected(entry: dict[str, Any]) -> str:
    if "lambda" in entry:
        return f"λ={entry['lambda']}"
    if "best_epoch" in entry:
        return f"epoch {entry['best_epoch']}/{entry['epochs_run']}"
    return "-"


def markdown_table(report: dict[str, Any]) -> str:
    """The test metrics of every model of ``report`` as a Markdown table."""
    head = ["model", *COLUMNS, "selected", "train s", "test eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in report["models"].items():
        t = entry["test"]
        cells = [f"{t[c]:.4f}" if c in t else "-" for c in COLUMNS]
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
        ax.plot(ks, [entry["test"][f"recall@{k}"] for k in ks], marker="o", label=name)
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
    merged = merge_reports([json.loads(open(p).read()) for p in args.reports])
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
