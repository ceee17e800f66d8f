"""The report's pure parts: verdicts against targets, the sustained-rate pick, the Markdown."""

from __future__ import annotations

from bench.suite.feed_http import SLO_DEGRADED, SLO_P99_MS, sustained
from bench.suite.report import markdown, plain_over_serve, targets_table


def _lat(p99: float) -> dict:
    return {"n": 10, "p50_ms": p99 / 2, "p95_ms": p99 * 0.9, "p99_ms": p99, "mean_ms": p99 / 2}


def _record() -> dict:
    return {
        "command": "feedray bench --items 10 --users 5",
        "machine": {
            "cpu": "cpu",
            "cpus": 2,
            "memory_gib": 1.0,
            "platform": "linux",
            "python": "3.11",
            "load_avg_1m_at_start": 0.5,
        },
        "commit": {"sha": "abc", "dirty": False},
        "measured_at": "now",
        "total_s": 12.0,
        "config": {"items": 10, "users": 5, "days": 0.1, "epochs": 1, "k": 500},
        "note": "note",
        "sections_s": {"world": 3.0, "features": 1.0},
        "errors": {"http": "Traceback: boom"},
        "not_measured": ["faults"],
        "world": {"events": 7, "phases_s": {"catalogue": 1.0}},
        "features": {
            "reads": 10,
            "read_user": _lat(0.5),
            "read_items_500": _lat(4.0),
            "read_items_500_first_sight_evalsha": _lat(5.0),
            "baseline_500_pipelined_hgetall": _lat(20.0),
            "feast_sdk": {"status": "not run: no interpreter"},
        },
    }


def test_verdicts_follow_the_direction_of_each_target():
    rows = {name: (value, verdict) for name, value, _, verdict in targets_table(_record())}
    assert rows["feature read, 1 user, p99 ms"] == (0.5, "met")
    assert rows["feature read, 500 items, p99 ms"] == (4.0, "missed")
    assert rows["recall@500 vs exact"] == (None, "not measured")
    assert rows["Feast p99 / ours p99, 500 items"] == (None, "not measured")


def test_sustained_picks_the_fastest_level_within_the_slo():
    ok = {"p99_ms": SLO_P99_MS - 1, "degraded_share": 0.0, "non_200": 0}
    levels = {
        "c1": ok | {"rps": 40.0},
        "c4": ok | {"rps": 90.0},
        "c8": ok | {"rps": 120.0, "degraded_share": SLO_DEGRADED * 2},
        "c16": ok | {"rps": 130.0, "p99_ms": SLO_P99_MS + 1},
    }
    assert sustained(levels)["best_level"] == "c4"
    assert sustained(levels)["rps"] == 90.0
    assert sustained({"c1": levels["c16"]})["rps"] is None


def test_markdown_shows_figures_errors_and_what_was_not_measured():
    text = markdown(_record(), "bench/results/scale_10.json")
    assert "bench/results/scale_10.json" in text
    assert "| feature read, 500 items, p99 ms | 4.000 | <= 3 | missed |" in text
    assert "Section `http` failed" in text and "boom" in text
    assert "- faults" in text
    assert "Feast SDK: not run: no interpreter." in text


def test_the_distribution_ratio_compares_sustained_rates_not_raw_throughput():
    record = _record() | {
        "pipeline": {"rps_one_thread": 80.0},
        "http": {
            "feed": {"c16": {"rps": 150.0, "degraded_share": 0.85}},
            "feed_sustained": {"rps": 40.0},
        },
    }
    assert plain_over_serve(record) == 2.0  # the one-thread figure while uvicorn's is absent
    record["http"]["plain_sustained"] = {"rps": 60.0}
    assert plain_over_serve(record) == 1.5
    record["http"]["feed_sustained"] = {"rps": None}  # no Serve level within the SLO
    assert plain_over_serve(record) is None
