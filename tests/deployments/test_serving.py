"""The feed service for real: Serve app over real Redis and Kafka on a simulated world.

One app for the whole module (start-up dominates on 2 cores); tests that break things
(fault injection, Redis stopped) restore them or run last.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import pytest

from tests.deployments.constructed_users import write_user

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECENT_LIMIT_CHECK = 200
STAGES = {"features", "retrieval", "ranking", "rerank", "total"}  # the latency histogram's stages


def _user(serving, user_id: str, preferred: str) -> str:
    """A new user whose *online* preferred content type (the re-rank's signal) is ``preferred``:
    a dozen plays of ``preferred`` items in the last hour, written through the store."""
    from app.features.online_store import OnlineStore

    store = OnlineStore.from_settings(serving.settings)
    write_user(store, serving.world, user_id, preferred, store.clock.time())
    features = store.read_user(user_id)
    assert features.preferred_content_type == preferred and features.plays_7d == 12, features
    return user_id


def _now(serving):
    from app.clock import clock_from_settings

    return clock_from_settings(serving.settings).now()


def _recent(serving, user_id: str) -> set[str]:
    from app.features.online_store import OnlineStore

    return set(OnlineStore.from_settings(serving.settings).read_user(user_id).recent_media_7d)


def _check_feed(body: dict, limit: int, exclude: set[str], max_per_creator: int = 2) -> None:
    items = body["items"]
    assert 0 < len(items) <= limit
    ids = [i["media_id"] for i in items]
    assert len(ids) == len(set(ids)), "duplicates"
    assert not set(ids) & exclude, "recently consumed item served"
    assert max(Counter(i["creator_id"] for i in items).values()) <= max_per_creator


def test_first_feed_after_deploy_is_warm(serving):
    """Replicas warm models, index and Redis before they report ready (and say so)."""
    from ray import serve

    first = serving.first_feed
    assert first["status"] == 200 and first["degraded"] == [], first
    assert len(first["items"]) == 20
    report = serve.get_deployment_handle("Ingress", app_name="feedray").warmup_report.remote()
    report = report.result()
    assert report["error"] is None and report["stages_ms"] > 0 and report["redis_ms"] > 0
    for name in ("Retrieval", "Ranking"):
        info = serve.get_deployment_handle(name, app_name="feedray").replica_info.remote().result()
        assert info["warmup"]["champion"]["ms"] > 0, info
    ranking = serve.get_deployment_handle("Ranking", app_name="feedray")
    assert ranking.replica_info.remote().result()["warmup"]["champion"]["redis"]


def test_feed_end_to_end_and_exposure(serving):
    user = _user(serving, "t-e2e", "VIDEO")
    response = serving.get("/api/v1/content/feed", user_id=user, limit=15)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "request_id",
        "user_id",
        "items",
        "model_versions",
        "arm",
        "degraded",
        "timings_ms",
    }
    assert body["user_id"] == user and body["arm"] in ("champion", "canary")
    assert body["degraded"] == []
    assert set(body["model_versions"]) == {"retrieval", "ranking"}
    assert set(body["timings_ms"]) == {"features", "retrieval", "ranking", "rerank", "total"}
    assert set(body["items"][0]) == {
        "media_id",
        "score",
        "content_type",
        "creator_id",
        "category",
        "source",
    }
    assert {i["source"] for i in body["items"]} == {"retrieval"}
    _check_feed(body, 15, _recent(serving, user))
    assert len(body["items"]) == 15

    # The exposure reaches Kafka.
    from confluent_kafka import Consumer

    consumer = Consumer(
        serving.settings.kafka.client_config(
            **{"group.id": f"t-{body['request_id']}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([serving.settings.kafka.topics.exposures])
    found = None
    deadline = time.monotonic() + 30
    try:
        while found is None and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=1.0):
                if message.error() is None:
                    record = json.loads(message.value())
                    if record["request_id"] == body["request_id"]:
                        found = record
    finally:
        consumer.close()
    assert found is not None, "exposure not on the topic"
    assert [i["media_id"] for i in found["items"]] == [i["media_id"] for i in body["items"]]
    assert found["model_versions"] == body["model_versions"]


def test_limits_and_content_type(serving):
    user = _user(serving, "t-limits", "VIDEO")
    for limit in (1, 7, 40):
        body = serving.get("/api/v1/content/feed", user_id=user, limit=limit).json()
        _check_feed(body, limit, _recent(serving, user))
    body = serving.get("/api/v1/content/feed", user_id=user, limit=30, content_type="AUDIO").json()
    assert body["items"] and {i["content_type"] for i in body["items"]} == {"AUDIO"}
    body = serving.get("/api/v1/content/feed", user_id=user).json()
    assert len(body["items"]) == 20  # default limit


def test_diversity_monotone_for_audio_first_user(serving):
    user = _user(serving, "t-audio-first", "AUDIO")
    shares = []
    for diversity in (0.0, 0.25, 0.5, 0.75, 1.0):
        body = serving.get(
            "/api/v1/content/feed", user_id=user, limit=20, diversity=diversity
        ).json()
        assert body["degraded"] == []
        shares.append(sum(i["content_type"] == "VIDEO" for i in body["items"]) / len(body["items"]))
    assert shares[0] == 0.0 and shares[-1] > 0.3
    assert all(a <= b for a, b in zip(shares, shares[1:], strict=False)), shares


@pytest.mark.parametrize(
    "params, name",
    [
        ({"user_id": "u1", "limit": 0}, "limit"),
        ({"user_id": "u1", "limit": 101}, "limit"),
        ({"user_id": "u1", "limit": "x"}, "limit"),
        ({"user_id": "u1", "diversity": 1.5}, "diversity"),
        ({"user_id": "u1", "diversity": -0.1}, "diversity"),
        ({"user_id": "u1", "content_type": "TEXT"}, "content_type"),
        ({"user_id": "bad id!"}, "user_id"),
        ({}, "user_id"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(serving, params, name):
    response = serving.get("/api/v1/content/feed", **params)
    assert response.status_code == 422
    assert any(error["loc"][-1] == name for error in response.json()["detail"])


def test_unknown_user_gets_cold_start_feed(serving):
    body = serving.get(
        "/api/v1/content/feed", user_id="never-seen-user-42", limit=20, language="es"
    ).json()
    assert body["degraded"] == []
    sources = Counter(i["source"] for i in body["items"])
    assert sources["cold_start"] > 0 and sources["trending"] > 0, sources
    _check_feed(body, 20, set())


def test_trending_and_health(serving):
    body = serving.get(
        "/api/v1/content/trending", content_type="VIDEO", language="en", limit=10
    ).json()
    assert len(body["items"]) == 10 and {i["content_type"] for i in body["items"]} == {"VIDEO"}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert serving.get("/healthz").json()["status"] == "ok"
    assert "/api/v1/content/feed" in serving.get("/openapi.json").json()["paths"]


def test_ranking_failure_falls_back_to_trending(serving):
    user = _user(serving, "t-ranking-down", "VIDEO")
    serving.update("Ranking", fault="error")
    try:
        for _ in range(3):
            response = serving.get("/api/v1/content/feed", user_id=user, limit=10)
            assert response.status_code == 200
            body = response.json()
            assert "ranking_unavailable" in body["degraded"]
            assert body["items"] and {i["source"] for i in body["items"]} == {"trending"}
            _check_feed(body, 10, _recent(serving, user))
    finally:
        serving.update("Ranking", fault=None)
    assert serving.get("/api/v1/content/feed", user_id=user).json()["degraded"] == []


def test_stage_over_budget_falls_back(serving):
    user = _user(serving, "t-over-budget", "VIDEO")
    serving.update("Retrieval", delay_ms=2500)  # beyond budget + hop allowance (10 + 1500 ms)
    try:
        t0 = time.monotonic()
        response = serving.get("/api/v1/content/feed", user_id=user, limit=10)
        elapsed = time.monotonic() - t0
        assert response.status_code == 200
        body = response.json()
        assert "retrieval_timeout" in body["degraded"]
        assert {i["source"] for i in body["items"]} == {"trending"}
        assert elapsed < 2.4  # it did not wait for the slow stage
    finally:
        serving.update("Retrieval", delay_ms=0)


def _refs(serving, version: int) -> tuple[str, str]:
    ms = serving.settings.models
    return f"{ms.retrieval_model_name}@{version}", f"{ms.ranking_model_name}@{version}"


def _swap_under_load(serving, tower: str, ranker: str, threads: int) -> list[tuple[int, dict]]:
    """Point both stages at (tower, ranker) while ``threads`` clients keep requesting feeds;
    returns every (status, body) seen, until the new versions answer (or 60 s)."""
    results: list[tuple[int, dict]] = []
    stop = threading.Event()

    def hammer(offset: int) -> None:
        k = offset
        while not stop.is_set():
            r = serving.get("/api/v1/content/feed", user_id=f"u{k % 600}", limit=10)
            results.append((r.status_code, r.json() if r.status_code == 200 else {}))
            k += threads

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        serving.update("Retrieval", models={"champion": tower, "canary": tower})
        serving.update("Ranking", models={"champion": ranker, "canary": ranker})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            results
            and results[-1][1].get("model_versions") == {"retrieval": tower, "ranking": ranker}
        ):
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return results


def test_hot_swap_under_load_has_no_errors(serving):
    from ray import serve

    tower1, _ranker1 = _refs(serving, 1)
    tower2, ranker2 = _refs(serving, 2)
    handles = {
        n: serve.get_deployment_handle(n, app_name="feedray") for n in ("Retrieval", "Ranking")
    }
    before = {n: h.replica_info.remote().result() for n, h in handles.items()}
    results = _swap_under_load(serving, tower2, ranker2, threads=2)
    assert len(results) > 10
    assert all(code == 200 for code, _ in results)
    assert all(not body["degraded"] for _, body in results), [
        b["degraded"] for _, b in results if b["degraded"]
    ]
    versions = [body["model_versions"]["retrieval"] for _, body in results]
    assert versions[0] == tower1 and versions[-1] == tower2
    assert results[-1][1]["model_versions"]["ranking"] == ranker2
    after = {n: h.replica_info.remote().result() for n, h in handles.items()}
    for name in handles:  # reconfigured in place: same process, same start time
        assert (after[name]["pid"], after[name]["started_at"]) == (
            before[name]["pid"],
            before[name]["started_at"],
        )
        assert after[name]["refs"] != before[name]["refs"]


def test_a_killed_ranking_replica_is_replaced_under_load_without_errors(serving):
    """The Ranking replica's actor killed while two clients request feeds: every answer is
    a 200 (ranked by retrieval order or trending while it is gone), Serve starts a new
    replica, and the feeds are ranked again after it (``bench.bench_faults``' replica fault)."""
    from bench.bench_faults import RANKING_KINDS, replica_kill_fault

    users = [f"u{k}" for k in range(50)]
    fault = replica_kill_fault(
        serving.base_url + "/api/v1/content/feed",
        users,
        clients=2,
        baseline_s=3.0,
        recovery_s=3.0,
        timeout_s=240.0,
    )
    phases = [fault[p] for p in ("baseline", "fault", "recovery")]
    assert all(p["n"] > 0 for p in phases), phases
    assert [p["non_200"] for p in phases] == [0, 0, 0]
    assert 0 < fault["replica_back_s"] < 240
    assert 0 < fault["recovered"]["first_good_s"] <= fault["replica_back_s"] + 3.0
    assert not set(fault["recovery"]["degraded_kinds"]) & set(RANKING_KINDS)
    body = serving.get("/api/v1/content/feed", user_id="u3", limit=10).json()
    assert "ranking" in body["model_versions"] and not body["degraded"]


def test_published_item_becomes_retrievable(serving):
    from confluent_kafka import Producer
    from ray import serve

    from app.schemas import MediaPublished

    item = MediaPublished(
        media_id="m-new-1", creator_id="c-new", content_type="AUDIO", category="music",
        language="en", duration_s=200.0, published_at=_now(serving),
    )  # fmt: skip
    retrieval = serve.get_deployment_handle("Retrieval", app_name="feedray")
    assert retrieval.contains.remote(["m-new-1"]).result() == {"m-new-1": False}
    producer = Producer(serving.settings.kafka.client_config())
    t0 = time.monotonic()
    producer.produce(
        serving.settings.kafka.topics.published,
        key=b"m-new-1",
        value=item.model_dump_json().encode(),
    )
    producer.flush(10)
    while time.monotonic() - t0 < 60:
        if retrieval.contains.remote(["m-new-1"]).result()["m-new-1"]:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    print(f"publish-to-retrievable: {elapsed:.2f}s")
    assert elapsed < 60
    stats = retrieval.stats.remote().result()
    assert stats["champion"]["size"] == serving.world.n_items + 1
    # A full rebuild swaps in a fresh index that still holds the live-added item, tuned on
    # the user vectors the champion's searches recorded (at least min_served_queries feeds).
    for k in range(serving.settings.models.index.min_served_queries):
        assert serving.get("/api/v1/content/feed", user_id=f"u{k}", limit=5).status_code == 200
    rebuilt = retrieval.rebuild.remote().result()
    assert rebuilt["champion"]["size"] == serving.world.n_items + 1
    assert rebuilt["champion"]["tuned_on"] == "users"
    assert rebuilt["champion"]["age_s"] < stats["champion"]["age_s"]
    assert retrieval.contains.remote(["m-new-1"]).result()["m-new-1"]


def test_prometheus_metrics_are_exported(serving):
    """Per-stage latency, fallbacks by kind, requests per arm, index size on Ray's /metrics."""
    import ray
    import requests

    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = {
        "ray_feedray_stage_latency_ms_bucket", "ray_feedray_fallbacks_total",
        "ray_feedray_feed_requests_total", "ray_feedray_index_size",
    }  # fmt: skip
    deadline = time.monotonic() + 60
    missing = wanted
    while missing and time.monotonic() < deadline:
        serving.get("/api/v1/content/feed", user_id="u5", limit=5)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        missing = {name for name in wanted if name not in text}
        time.sleep(2)
    assert not missing, missing


def test_prometheus_keeps_the_serving_metrics_per_stage_kind_and_arm(serving, tmp_path):
    """The stack's Prometheus (``app.stack.prometheus``) scraping this Ray's metrics export
    holds the per-stage latency histogram, the fallbacks by kind and the requests per arm."""
    import ray
    import requests

    from app.stack.manager import Stack
    from app.stack.process import free_port

    node_port = ray._private.worker.global_worker.node.metrics_export_port
    settings = serving.settings.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "ray": serving.settings.ray.model_copy(update={"metrics_export_port": node_port}),
            "prometheus": serving.settings.prometheus.model_copy(
                update={"enabled": True, "port": free_port(), "scrape_interval_s": 1.0}
            ),
        }
    )
    stack = Stack(settings, only=["prometheus"])
    stack.up()

    def query(expr: str) -> list[dict]:
        answer = requests.get(
            f"{settings.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10
        ).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    try:
        deadline = time.monotonic() + 90
        stages = arms = kinds = exported_kinds = set()
        p99: list[dict] = []
        while time.monotonic() < deadline:
            serving.get("/api/v1/content/feed", user_id="u5", limit=5)
            counts = query("sum by (stage) (ray_feedray_stage_latency_ms_count)")
            stages = {r["metric"]["stage"] for r in counts}
            arms = {r["metric"]["arm"] for r in query("ray_feedray_feed_requests_total")}
            kinds = {r["metric"]["kind"] for r in query("ray_feedray_fallbacks_total")}
            exported = requests.get(f"http://127.0.0.1:{node_port}/metrics", timeout=10).text
            exported_kinds = set(
                re.findall(r'ray_feedray_fallbacks_total\{[^}]*kind="([^"]+)"', exported)
            )
            p99 = query(
                "histogram_quantile(0.99, sum by (le) (ray_feedray_stage_latency_ms_bucket"
                '{stage="total"}))'
            )
            if STAGES <= stages and arms and exported_kinds <= kinds and p99:
                break
            time.sleep(1)
        assert STAGES <= stages
        assert "champion" in arms
        assert exported_kinds <= kinds  # every fallback kind Ray exports, Prometheus holds
        assert p99 and float(p99[0]["value"][1]) > 0
    finally:
        stack.down(purge=True)


def test_local_stages_serve_the_feed_without_hops(serving):
    """The same app with retrieval and ranking inside the ingress (``stages: local``):
    real models, fallbacks, hot swap and the live index work there too."""
    from ray import serve

    from deployments.deploy import with_stages

    _tower2, _ranker2 = _refs(serving, 2)
    tower3, ranker3 = _refs(serving, 3)
    serving.redeploy(with_stages(serving.config, "local"))
    status = serve.status().applications["feedray"]
    assert set(status.deployments) == {"Ingress"}
    user = _user(serving, "t-local-stages", "VIDEO")
    body = serving.get("/api/v1/content/feed", user_id=user, limit=15).json()
    assert body["degraded"] == [] and {i["source"] for i in body["items"]} == {"retrieval"}
    assert set(body["model_versions"]) == {"retrieval", "ranking"}
    _check_feed(body, 15, _recent(serving, user))

    serving.update("Ranking", fault="error")
    body = serving.get("/api/v1/content/feed", user_id=user, limit=10).json()
    assert "ranking_unavailable" in body["degraded"] and {i["source"] for i in body["items"]} == {
        "trending"
    }
    serving.update("Ranking", fault=None)

    # Hot swap under requests: zero errors, in place (the ingress replica keeps its process).
    ingress = serve.get_deployment_handle("Ingress", app_name="feedray")
    results = _swap_under_load(serving, tower3, ranker3, threads=1)
    assert len(results) > 5 and all(code == 200 for code, _ in results)
    assert all(not b["degraded"] for _, b in results), [
        b["degraded"] for _, b in results if b["degraded"]
    ]
    assert results[-1][1]["model_versions"] == {"retrieval": tower3, "ranking": ranker3}

    # Live index inside the ingress.
    from confluent_kafka import Producer

    from app.schemas import MediaPublished

    item = MediaPublished(
        media_id="m-new-local",
        creator_id="c-new",
        content_type="VIDEO",
        category="music",
        language="en",
        duration_s=120.0,
        published_at=_now(serving),
    )
    assert ingress.index_contains.remote(["m-new-local"]).result() == {"m-new-local": False}
    producer = Producer(serving.settings.kafka.client_config())
    producer.produce(
        serving.settings.kafka.topics.published,
        key=b"m-new-local",
        value=item.model_dump_json().encode(),
    )
    producer.flush(10)
    t0 = time.monotonic()
    while (
        time.monotonic() - t0 < 60
        and not ingress.index_contains.remote(["m-new-local"]).result()["m-new-local"]
    ):
        time.sleep(0.1)
    assert time.monotonic() - t0 < 60


def _trending_keys(serving) -> list[bytes]:
    from app.features.online_store import OnlineStore

    store = OnlineStore.from_settings(serving.settings)
    return [k for k in store.client.scan_iter(f"{store.config.prefix}:trending:*")]


def test_fallback_is_a_full_feed_after_ttls_and_without_lists(serving):
    """No refresher runs after the bootstrap's one refresh. Every trending key that carries
    a TTL is expired now (what waiting past it would do), the retrieval stage is failed:
    the fallback is still a full feed, from Redis, then from the replica's memory once the
    lists are gone, then with the newest items when trending cannot fill it."""
    from app.features.online_store import OnlineStore

    client = OnlineStore.from_settings(serving.settings).client
    user = _user(serving, "t-fallback-full", "VIDEO")
    keys = _trending_keys(serving)
    saved = {k: client.dump(k) for k in keys}
    assert keys, "the bootstrap wrote no trending list"
    serving.update("Retrieval", fault="error")
    try:
        for key in keys:
            if client.pttl(key) > 0:
                client.pexpire(key, 1)
        time.sleep(1.5)  # past the replica's trending cache TTL (1 s in the test config)
        body = serving.get("/api/v1/content/feed", user_id=user, limit=20).json()
        assert "retrieval_unavailable" in body["degraded"], body["degraded"]
        assert len(body["items"]) == 20, body
        assert {i["source"] for i in body["items"]} == {"trending"}
        assert not {"trending_unavailable", "trending_last_known"} & set(body["degraded"])
        _check_feed(body, 20, _recent(serving, user))

        client.delete(*_trending_keys(serving))  # lists lost: the replica's memory serves
        time.sleep(1.5)
        body = serving.get("/api/v1/content/feed", user_id=user, limit=20).json()
        assert {"retrieval_unavailable", "trending_last_known"} <= set(body["degraded"])
        assert len(body["items"]) == 20
        _check_feed(body, 20, _recent(serving, user))

        # More AUDIO than trending holds: the newest AUDIO items fill the feed.
        body = serving.get(
            "/api/v1/content/feed", user_id=user, limit=100, content_type="AUDIO"
        ).json()
        assert {"retrieval_unavailable", "newest_fallback"} <= set(body["degraded"])
        assert len(body["items"]) == 100 and {i["content_type"] for i in body["items"]} == {"AUDIO"}
        _check_feed(body, 100, _recent(serving, user))
    finally:
        serving.update("Retrieval", fault=None)
        for key, blob in saved.items():
            client.restore(key, 0, blob, replace=True)


def test_redis_down_uses_cached_then_default_features(serving):
    """Runs last in the module: it stops the service's Redis."""
    known = _user(serving, "t-audio-redis", "AUDIO")
    assert serving.get("/api/v1/content/feed", user_id=known).json()["degraded"] == []  # now cached
    serving.redis_stack.down()
    time.sleep(0.5)
    body = serving.get("/api/v1/content/feed", user_id=known, limit=10).json()
    assert {"features_unavailable", "features_cached"} <= set(body["degraded"])
    assert body["items"]
    body = serving.get("/api/v1/content/feed", user_id="u599-never-cached", limit=10).json()
    assert {"features_unavailable", "features_default"} <= set(body["degraded"])
    # After breaker_failures failed calls the breaker is open: Redis is not even tried and the
    # answer comes from the replica at once (a generous bound: a behavioural check only).
    failures = serving.settings.serving_redis.breaker_failures
    for _ in range(failures + 1):
        body = serving.get("/api/v1/content/feed", user_id=known, limit=10).json()
        if "redis_circuit_open" in body["degraded"]:
            break
    assert "redis_circuit_open" in body["degraded"], body["degraded"]
    for _ in range(3):  # well inside breaker_retry_after_s: no half-open probe among them
        t0 = time.monotonic()
        response = serving.get("/api/v1/content/feed", user_id=known, limit=10)
        elapsed = time.monotonic() - t0
        body = response.json()
        assert response.status_code == 200 and len(body["items"]) == 10
        assert {"redis_circuit_open", "features_cached"} <= set(body["degraded"])
        assert body["timings_ms"]["features"] < 50 and elapsed < 1.0, (body["timings_ms"], elapsed)
