"""The scale suite end to end on a scaled-down world: every section runs and reports sane figures.

A 50,000-item / 20,000-user world on a private Redis + Kafka + MLflow (``bench.common``),
a forced IVF index (the default picks exact search below 200,000 items, which would make
the ANN-vs-exact comparison empty), a few seconds per section, then the JSON and the
Markdown are checked for every section and for figures that are consistent with each other.
"""

from __future__ import annotations

import json

import pytest

from app.bench_settings import BenchSettings
from bench.suite.report import targets_table
from bench.suite.run import run_suite

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _latency_ok(p: dict) -> None:
    assert p["n"] > 0
    assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"]


def test_scaled_down_suite_writes_every_section(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDRAY_MODELS__INDEX__KIND", "ivf_flat")
    bench = BenchSettings(
        items=50_000,
        users=20_000,
        reads=500,
        queries=200,
        exact_queries=50,
        http_requests=60,
        publish_trials=3,
        feast_reads=100,
        results_dir=tmp_path / "results",
        markdown=tmp_path / "BENCHMARKS.md",
    )
    record, json_path, md_path = run_suite(bench, command="pytest", log=lambda line: None)

    assert record["errors"] == {}
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(record))
    assert json_path.name == "scale_50000.json"
    assert set(record["sections_s"]) == {
        "world",
        "features",
        "retrieval",
        "ranking",
        "pipeline",
        "memory",
        "http",
    }
    assert all(s > 0 for s in record["sections_s"].values())
    world = record["world"]
    assert world["items"] == 50_000 and world["users"] == 20_000 and world["events"] > 0
    trained = [line for line in world["bootstrap_log"] if "losses" in line]
    assert trained and "nan" not in trained[0]  # the training set had examples
    for model in ("two_tower", "ranker"):
        assert world["training"][model]["rows"] > 0
        assert world["training"][model]["samples_per_s"] > 0
    peak = world["peak_pss_mb"]
    assert set(peak) == {"build", *world["phases_s"]}
    assert 0 < peak["training_set"] <= peak["build"]

    features = record["features"]
    for key in ("read_user", "read_items_500", "baseline_500_pipelined_hgetall"):
        _latency_ok(features[key])
        assert features[key]["n"] == 500
    assert features["sampled_users_with_features"] > 0
    feast = features["feast_sdk"]  # measured only where `make bench-feast` installed Feast
    assert feast["status"] == "measured" or feast["status"].startswith("not run")
    if feast["status"] == "measured":
        _latency_ok(feast["get_online_features_500"])
        assert feast["values_found_share"] == 1.0

    retrieval = record["retrieval"]
    assert retrieval["index"]["kind"] == "ivf_flat"
    assert retrieval["index_items"] == 50_000
    for key in ("user_tower", "ann_top_k", "stage", "exact_top_k"):
        _latency_ok(retrieval[key])
    assert 0.5 < retrieval["recall_at_500_vs_exact"] <= 1.0
    assert retrieval["exact_top_k"]["p50_ms"] > retrieval["ann_top_k"]["p50_ms"]

    ranking = record["ranking"]
    _latency_ok(ranking["stage"])
    assert ranking["candidates_min"] > 0
    assert ranking["compute_ms_reported"]["p50_ms"] <= ranking["stage"]["p99_ms"]

    pipeline = record["pipeline"]
    _latency_ok(pipeline["total"])
    assert pipeline["total"]["p50_ms"] >= pipeline["retrieval"]["p50_ms"]
    assert pipeline["rps_one_thread"] > 0

    memory = record["memory"]
    assert memory["process"]["rss_mb"] > 0
    assert memory["redis"]["item_record_bytes_mean"] > 0
    assert memory["redis"]["user_keys_bytes_mean"] > 0
    assert memory["redis"]["used_memory_bytes"] > memory["redis"]["items_total_estimate_bytes"]
    assert memory["index"]["saved_total_bytes"] >= memory["index"]["vector_bytes"] > 0

    http = record["http"]
    for group in ("bare_ingress", "feed"):
        assert set(http[group]) == {"c1", "c4", "c8", "c16"}
        for level in http[group].values():
            _latency_ok(level)
            assert level["rps"] > 0 and level["non_200"] >= 0
    assert http["feed"]["c1"]["non_200"] == 0
    assert 0.0 <= http["feed"]["c1"]["degraded_share"] <= 1.0
    assert http["replica_rss_mb"] and all(v > 0 for v in http["replica_rss_mb"].values())
    fresh = http["freshness"]
    assert len(fresh["publish_to_retrievable_s"]["samples"]) == bench.publish_trials
    assert 0 < fresh["publish_to_retrievable_s"]["max"] < 60
    _latency_ok(fresh["load"])
    assert fresh["load"]["rps"] > 0
    assert set(http["plain"]) == {"c1", "c4", "c8", "c16"}
    for level in http["plain"].values():  # no admission, no stage timeouts: every answer
        _latency_ok(level)
        assert level["non_200"] == 0 and level["errors"] == 0
        assert level["stages_ms"]["ranking"]["p50_ms"] > 0
    assert http["plain_process"]["rss_mb"] > 0
    assert http["plain_sustained"]["slo"] == http["feed_sustained"]["slo"]

    text = md_path.read_text()
    assert str(json_path) in text or json_path.name in text
    for name, value, _, verdict in targets_table(record):
        assert name in text
        if name.startswith("Feast") and feast["status"] != "measured":
            assert value is None and verdict == "not measured"
        elif name.startswith("plain-process") and http["feed_sustained"]["rps"] is None:
            assert value is None and verdict == "not measured"  # no Serve level within SLO
        else:
            assert value is not None and verdict in {"met", "missed"}
