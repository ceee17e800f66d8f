"""The evaluation report: Markdown with PNG plots, and the verdicts as JSON.

Writes the report's files (the store and MLflow I/O is in ``offline`` and ``record``). Figures
are drawn on matplotlib's Agg canvas (``FigureCanvasAgg``) without pyplot, so no global
backend or figure state is touched and a headless process needs no display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.experiments.audit import AuditCell, AuditVerdict
from app.experiments.verdict import GateVerdict, MetricResult


@dataclass
class ReportFiles:
    """What ``write_report`` wrote."""

    markdown: Path
    verdict_json: Path | None = None
    audit_json: Path | None = None
    plots: list[Path] = field(default_factory=list)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "" if value is None else format(value, spec)


def _threshold(r: MetricResult) -> str:
    if r.threshold_relative:
        return f"{100 * r.threshold:g} %"
    return f"{r.threshold:g} (absolute)"


def _relative_threshold(r: MetricResult) -> float | None:
    """The MDE / tolerance as a fraction of the champion's value (the plot's units)."""
    if r.threshold_relative or r.name == "latency_p99":
        return r.threshold
    return r.threshold_absolute / r.champion if r.champion else None


def _relative_interval(r: MetricResult) -> tuple[float, float, float] | None:
    """(difference, low, high) relative to the champion's value, or None."""
    if r.difference is None or not r.champion:
        return None
    if r.name == "latency_p99":  # already relative
        return r.difference, r.ci_low, r.ci_high
    return r.difference / r.champion, r.ci_low / r.champion, r.ci_high / r.champion


def _metrics_plot(verdict: GateVerdict, path: Path) -> Path | None:
    rows = [(r, _relative_interval(r)) for r in verdict.metrics]
    rows = [(r, iv) for r, iv in rows if iv is not None]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 0.55 * len(rows) + 1.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, (r, (mid, low, high)) in enumerate(rows):
        colour = {"improved": "tab:green", "regressed": "tab:red", "breached": "tab:red"}.get(
            r.outcome, "tab:blue"
        )
        ax.errorbar(
            100 * mid, y, xerr=[[100 * (mid - low)], [100 * (high - mid)]], fmt="o", color=colour
        )
        threshold = _relative_threshold(r)
        if threshold is None:
            continue
        if r.role == "decision":
            ax.plot([100 * threshold, -100 * threshold], [y, y], "|", color="grey", ms=14)
        else:
            worse = -1 if r.higher_is_better else 1
            ax.plot([100 * worse * threshold], [y], "|", color="tab:orange", ms=14)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r.name}\n({r.outcome})" for r, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("canary vs champion, % of champion (interval; grey: ±MDE, orange: tolerance)")
    ax.set_title(f"{verdict.decision}: {verdict.test} test, alpha {verdict.significance_level}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _audit_plot(audit: AuditVerdict, dimension: str, path: Path) -> Path | None:
    cells = [c for c in audit.cells if c.dimension == dimension]
    if not cells:
        return None
    groups = list(dict.fromkeys(c.group_label for c in cells))
    levels = sorted({c.level for c in cells})
    grid = np.full((len(groups), len(levels)), np.nan)
    for c in cells:
        grid[groups.index(c.group_label), levels.index(c.level)] = c.difference
    limit = max(float(np.nanmax(np.abs(grid))), audit.min_share_difference) * 100
    fig = Figure(figsize=(max(6.0, 0.38 * len(levels) + 3), 0.32 * len(groups) + 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(100 * grid, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for c in cells:
        if c.failed:
            y, x = groups.index(c.group_label), levels.index(c.level)
            ax.text(x, y, "x", ha="center", va="center", color="black", fontweight="bold")
    ax.set_xticks(range(len(levels)), levels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    ax.set_title(f"{dimension}: candidate - reference share (pp); x = fails the audit")
    fig.colorbar(image, ax=ax, label="share points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _verdict_markdown(verdict: GateVerdict, plot: Path | None) -> list[str]:
    a = verdict.arms
    lines = [
        f"## Verdict: **{verdict.decision}**",
        "",
        *[f"- {reason}" for reason in verdict.reasons],
        "",
        f"Test: `{verdict.test}`, significance level {verdict.significance_level}, "
        f"target power {verdict.target_power}"
        + ("" if verdict.audit_passed is None else f", bias audit passed: {verdict.audit_passed}"),
        "",
        "| arm | users | share |",
        "|---|---:|---:|",
        f"| champion | {a.champion:,} | {1 - a.realised_canary_share:.4f} |",
        f"| canary | {a.canary:,} | {a.realised_canary_share:.4f} "
        f"(configured {a.expected_canary_share:.4f}) |",
        "",
        f"Sample-ratio check: chi-square p = {a.srm_p_value:.3g}"
        f"{' (MISMATCH)' if a.sample_ratio_mismatch else ''}; users in both arms: {a.mixed}.",
        "",
    ]
    if verdict.metrics:
        lines += [
            "| metric | role | champion | canary | difference | interval | p | p (Holm) "
            "| CUPED var. reduction | power | MDE / tolerance | outcome |",
            "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in verdict.metrics:
            relative = _relative_interval(r)
            rel = "" if relative is None else f" ({100 * relative[0]:+.2f} %)"
            interval = "" if r.ci_low is None else f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
            lines.append(
                f"| {r.name} | {r.role} | {_fmt(r.champion)} | {_fmt(r.canary)} | "
                f"{_fmt(r.difference)}{rel} | {interval} | {_fmt(r.p_value, '.3g')} | "
                f"{_fmt(r.p_adjusted, '.3g')} | {_fmt(r.cuped_variance_reduction, '.1%')} | "
                f"{_fmt(r.power, '.2f')} | {_threshold(r)} | {r.outcome} |"
            )
        lines.append("")
    if plot is not None:
        lines += [f"![metrics]({plot.name})", ""]
    return lines


def _cell_row(c: AuditCell) -> str:
    return (
        f"| {c.group_label} | {c.dimension}={c.level} | {c.reference_share:.4f} | "
        f"{c.candidate_share:.4f} | {100 * c.difference:+.2f} | {c.q_value:.3g} | "
        f"{c.q_beyond_floor:.3g} | {c.reference_users:,} / {c.candidate_users:,} | "
        f"{'FAIL' if c.failed else ''} |"
    )


def _audit_markdown(audit: AuditVerdict, plots: list[Path]) -> list[str]:
    lines = [
        f"## Bias audit: **{'passed' if audit.passed else 'failed'}**",
        "",
        f"{audit.candidate} vs {audit.reference}: {audit.tests} cells tested, "
        f"{audit.significant} different from zero and {audit.failed} different by more than "
        f"{100 * audit.min_share_difference:.1f} share points (these fail), both at FDR "
        f"{audit.false_discovery_rate} (Benjamini-Hochberg).",
        "",
    ]
    shown = audit.failures() or sorted(audit.cells, key=lambda c: c.q_beyond_floor)[:10]
    if shown:
        lines += [
            "Failing cells:" if audit.failures() else "Most significant cells (none fail):",
            "",
            "| group | level | reference share | candidate share | difference (pp) | q (vs 0) "
            "| q (beyond floor) | users (ref / cand) | |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
            *[_cell_row(c) for c in sorted(shown, key=lambda c: c.q_beyond_floor)[:40]],
            "",
        ]
    if audit.untested_groups:
        lines += [f"Untested (fewer than {audit.min_users} users in an arm): "
                  + ", ".join(audit.untested_groups), ""]  # fmt: skip
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return lines + [""]


def write_report(
    directory: Path,
    *,
    verdict: GateVerdict | None = None,
    audit: AuditVerdict | None = None,
    title: str = "Canary evaluation",
) -> ReportFiles:
    """Write ``report.md``, ``verdict.json`` / ``audit.json`` and the plots into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(markdown=directory / "report.md")
    lines = [f"# {title}", ""]
    if verdict is not None:
        plot = _metrics_plot(verdict, directory / "metrics.png")
        files.plots += [plot] if plot else []
        files.verdict_json = directory / "verdict.json"
        files.verdict_json.write_text(verdict.model_dump_json(indent=2))
        lines += _verdict_markdown(verdict, plot)
    if audit is not None:
        plots = []
        for dimension in dict.fromkeys(c.dimension for c in audit.cells):
            plot = _audit_plot(audit, dimension, directory / f"audit_{dimension}.png")
            plots += [plot] if plot else []
        files.plots += plots
        files.audit_json = directory / "audit.json"
        files.audit_json.write_text(audit.model_dump_json(indent=2))
        lines += _audit_markdown(audit, plots)
    files.markdown.write_text("\n".join(lines))
    return files
