"""The suite's outputs: one JSON record and ``BENCHMARKS.md`` generated from it.

Every figure in the Markdown is read from the JSON record; targets sit beside the figures
with a met / missed verdict computed from them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from bench.common import PROJECT_ROOT

SEED_ITEMS = 3_000_000  # the seed's catalogue, which the targets are set for


def machine() -> dict:
    """CPU model, core count, memory and load of this host."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_1m_at_start": os.getloadavg()[0],
    }


def commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def write_json(record: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _get(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}" if abs(value) < 10 else f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


def _verdict(value, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "missed"


def plain_over_serve(record: dict) -> float | None:
    """The plain process's req/s over the Serve feed's sustained req/s within the SLO.

    The plain process: the same pipeline behind plain uvicorn (``http.plain_sustained``)
    when measured, else the in-process one-thread figure (``pipeline.rps_one_thread``). A
    level whose answers are mostly the trending fallback is not a feed's throughput, so the
    Serve side is the sustained rate, never the best raw requests/s.
    """
    plain = _get(record, "http.plain_sustained.rps") or _get(record, "pipeline.rps_one_thread")
    serve = _get(record, "http.feed_sustained.rps")
    return plain / serve if plain and serve else None


def targets_table(record: dict) -> list[tuple[str, object, str, str]]:
    """(figure, value, target, verdict) rows for the issue's targets."""
    k = _get(record, "config.k") or 500
    record = record | {"derived": {"plain_over_serve_rps": plain_over_serve(record)}}
    rows = [
        ("feature read, 1 user, p99 ms", "features.read_user.p99_ms", 1.0, False),
        ("feature read, 500 items, p99 ms", "features.read_items_500.p99_ms", 3.0, False),
        ("Feast p99 / ours p99, 500 items", "features.feast_sdk.p99_over_ours", 10.0, True),
        ("retrieval (user tower + ANN) p99 ms", "retrieval.user_tower_plus_ann.p99_ms", 8.0, False),
        ("retrieval stage as served, p99 ms", "retrieval.stage.p99_ms", 8.0, False),
        (f"recall@{k} vs exact", f"retrieval.recall_at_{k}_vs_exact", 0.95, True),
        ("exact / ANN search time (p50)", "retrieval.exact_over_ann_p50", 20.0, True),
        (f"ranking {k} candidates p99 ms", "ranking.stage.p99_ms", 15.0, False),
        ("HTTP feed c1 p99 ms", "http.feed.c1.p99_ms", 40.0, False),
        ("HTTP sustained req/s within SLO", "http.feed_sustained.rps", 150.0, True),
        (
            "publish-to-retrievable under load, max s",
            "http.freshness.publish_to_retrievable_s.max",
            5.0,
            False,
        ),
        (
            "plain-process req/s / Serve sustained req/s",
            "derived.plain_over_serve_rps",
            1.5,
            False,
        ),
    ]
    out = []
    for name, path, target, higher in rows:
        value = _get(record, path)
        sign = ">=" if higher else "<="
        out.append((name, value, f"{sign} {target:g}", _verdict(value, target, higher)))
    return out


def _level_rows(levels: dict) -> list[str]:
    rows = []
    for name, f in levels.items():
        rows.append(
            f"| {name} | {_fmt(f['p50_ms'])} | {_fmt(f['p95_ms'])} | {_fmt(f['p99_ms'])} | "
            f"{_fmt(f['rps'])} | {_fmt(f.get('degraded_share'))} | {f['non_200']} |"
        )
    return rows


def markdown(record: dict, json_path: str) -> str:
    """BENCHMARKS.md for ``record`` (the JSON written to ``json_path``)."""
    m, c = record["machine"], record["commit"]
    lines = [
        "# Benchmarks at catalogue scale",
        "",
        f"Generated by `{record['command']}` from `{json_path}`; do not edit by hand.",
        "",
        f"- machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}, "
        f"Python {m['python']}; load average at start {m['load_avg_1m_at_start']:.2f}",
        f"- commit: `{c['sha']}`{' (with uncommitted changes)' if c['dirty'] else ''}",
        f"- measured at: {record['measured_at']}; total {record['total_s']:.0f} s",
        f"- world: {record['config']['items']:,} items, {record['config']['users']:,} users, "
        f"{record['config']['days']} simulated days of events at "
        f"{record['config'].get('sessions_per_day')} sessions per user-day and "
        f"{record['config'].get('session_items')} items per session "
        f"({_fmt(_get(record, 'world.events'))} events), models trained in-process for "
        f"{record['config']['epochs']} epoch(s) on the point-in-time training set of those "
        "events",
        f"- {record['note']}",
        *(
            [
                f"- **scaled down**: {record['config']['items']:,} items, below the seed's "
                f"{SEED_ITEMS:,}; the targets are for {SEED_ITEMS:,} items"
            ]
            if record["config"]["items"] < SEED_ITEMS
            else []
        ),
        "",
        "## Targets",
        "",
        "| figure | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {_fmt(v)} | {t} | {verdict} |" for n, v, t, verdict in targets_table(record)
    ]
    lines += ["", "## Sections and their durations", "", "| section | seconds |", "|---|---|"]
    lines += [f"| {name} | {s:.1f} |" for name, s in record["sections_s"].items()]
    world = record.get("world") or {}
    lines += [f"- {line}" for line in world.get("bootstrap_log", [])]
    if world:
        lines += [
            "",
            "World build phases (seconds): "
            + ", ".join(f"{k} {v:.1f}" for k, v in world.get("phases_s", {}).items()),
        ]
    if world.get("training"):
        lines += ["", "Training in the world build (in-process, one process):", ""]
        lines += [
            "| model | rows per epoch | epochs | seconds | samples/s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {t['rows']:,} | {t['epochs']} | {t['s']:.1f} | {t['samples_per_s']:,.0f} |"
            for name, t in world["training"].items()
        ]
        peak = ", ".join(f"{k} {v:,.0f}" for k, v in world["peak_pss_mb"].items())
        lines += ["", f"Peak PSS (MiB): {peak}. {world['peak_pss_note']}."]
    f = record.get("features")
    if f:
        lines += [
            "",
            f"## Feature lookup ({f['reads']:,} reads each)",
            "",
            "| read | p50 ms | p99 ms |",
            "|---|---|---|",
        ]
        for key in (
            "read_user",
            "read_items_500",
            "read_items_500_first_sight_evalsha",
            "baseline_500_pipelined_hgetall",
        ):
            lines.append(f"| {key} | {_fmt(f[key]['p50_ms'])} | {_fmt(f[key]['p99_ms'])} |")
        feast = f["feast_sdk"]
        if feast["status"] == "measured":
            g = feast["get_online_features_500"]
            lines.append(
                f"| Feast {feast['feast_version']} get_online_features, 500 items "
                f"({feast['reads']:,} reads) | {_fmt(g['p50_ms'])} | {_fmt(g['p99_ms'])} |"
            )
            lines += ["", f"Feast p99 / ours p99 (500 items): {feast['p99_over_ours']:.1f}x."]
        else:
            lines += ["", f"Feast SDK: {feast['status']}."]
    r = record.get("retrieval")
    if r:
        lines += [
            "",
            f"## Retrieval over {r['index_items']:,} items (index `{r['index']['kind']}`, "
            f"nlist {r['index'].get('nlist')}, nprobe {r['index'].get('nprobe')})",
            "",
            "| timing | p50 ms | p99 ms |",
            "|---|---|---|",
        ]
        for key in ("user_tower", "ann_top_k", "user_tower_plus_ann", "stage", "exact_top_k"):
            lines.append(f"| {key} | {_fmt(r[key]['p50_ms'])} | {_fmt(r[key]['p99_ms'])} |")
    for key, title in (("ranking", "Ranking"), ("pipeline", "Plain-process pipeline")):
        s = record.get(key)
        if s:
            lines += ["", f"## {title}", "", "```json", json.dumps(s, indent=2), "```"]
    mem = record.get("memory")
    if mem:
        lines += ["", "## Memory", "", "```json", json.dumps(mem, indent=2), "```"]
    h = record.get("http")
    if h and "feed" in h:
        head = ["| level | p50 ms | p95 ms | p99 ms | req/s | degraded | non-200 |"]
        head.append("|---|---|---|---|---|---|---|")
        transport = ", ".join(f"`{k}={v}`" for k, v in h.get("transport", {}).items())
        lines += ["", "## HTTP through Ray Serve", ""]
        lines += [f"Serve transport: {transport or 'not recorded'}.", ""]
        lines += ["Feed:", "", *head, *_level_rows(h["feed"])]
        lines += ["", "Bare Serve ingress (constant):", "", *head, *_level_rows(h["bare_ingress"])]
        lines += ["", "```json", json.dumps(h["feed_sustained"], indent=2), "```"]
        if "freshness" in h:
            fresh, under = h["freshness"]["publish_to_retrievable_s"], h["freshness"]["load"]
            lines += ["", "Publish to retrievable under load:", ""]
            lines += [
                f"{len(fresh['samples'])} items published while {under['concurrency']} feed "
                f"requests were in flight: median {fresh['median']:.3f} s, max "
                f"{fresh['max']:.3f} s; the feed meanwhile: p99 {_fmt(under['p99_ms'])} ms, "
                f"{_fmt(under['rps'])} req/s, degraded {_fmt(under['degraded_share'])}, "
                f"non-200 {under['non_200']}."
            ]
        if "plain" in h:
            lines += ["", "## The same pipeline in one plain process behind uvicorn", ""]
            lines += [f"{h['plain_process']['note']}.", ""]
            lines += [*head, *_level_rows(h["plain"])]
            lines += ["", "```json", json.dumps(h["plain_sustained"], indent=2), "```"]
    elif h:
        lines += ["", "## HTTP through Ray Serve", "", str(h.get("status"))]
    for name, error in record.get("errors", {}).items():
        lines += ["", f"## Section `{name}` failed", "", "```", error.strip(), "```"]
    lines += ["", "## Not measured by this suite", ""]
    lines += [f"- {item}" for item in record["not_measured"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Regenerate the Markdown from a suite JSON: ``python -m bench.suite.report JSON [MD]``."""
    import sys

    source = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else PROJECT_ROOT / "BENCHMARKS.md"
    record = json.loads(source.read_text())
    shown = source.resolve()
    try:
        shown = shown.relative_to(PROJECT_ROOT)
    except ValueError:
        pass
    target.write_text(markdown(record, str(shown)))


if __name__ == "__main__":
    main()
