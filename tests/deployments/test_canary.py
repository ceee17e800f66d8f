"""Canary operations on the real feed service (the module's one Serve app, real Redis, Kafka,
MLflow): the canary arm on its own replicas, the guardrail abort, promotion and rollback
under load. Leaves the service as it found it (champion v1, no canary) for test_serving."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from app.experiments.assignment import assign_arm
from app.experiments.canary import CanaryVersions
from app.serving import degrade
from tests.deployments.feeds import USERS, Load, feeds_of, ref, set_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_canary_users_are_served_by_the_canary_replicas(serving, ops):
    from ray import serve

    started = ops.start(CanaryVersions("2", "3"), share=0.5, experiment="t-canary-start")
    assert started["champion"] == {"retrieval": "1", "ranking": "1"}
    feeds = feeds_of(serving, USERS[:80])
    assert all(code == 200 for _, code, _ in feeds)
    arms = Counter(body["arm"] for _, _, body in feeds)
    assert arms["canary"] > 10 and arms["champion"] > 10, arms
    for user, _, body in feeds:
        # the arm the ingress replica picked is the one this process computes: a stable hash
        assert body["arm"] == assign_arm(user, 0.5, "t-canary-start")
        assert body["degraded"] == [], body["degraded"]
        version = ("2", "3") if body["arm"] == "canary" else ("1", "1")
        assert body["model_versions"] == {
            "retrieval": ref(serving, "retrieval", version[0]),
            "ranking": ref(serving, "ranking", version[1]),
        }
    again = feeds_of(serving, USERS[:80])
    assert [b["arm"] for _, _, b in again] == [b["arm"] for _, _, b in feeds]

    info = {
        name: serve.get_deployment_handle(name, app_name="feedray").replica_info.remote().result()
        for name in ("Retrieval", "Ranking", "CanaryRetrieval", "CanaryRanking")
    }
    assert info["CanaryRetrieval"]["refs"] == {"canary": ref(serving, "retrieval", 2)}
    assert info["CanaryRanking"]["refs"] == {"canary": ref(serving, "ranking", 3)}
    refs = info["Ranking"]["refs"]  # the champion's replicas hold no canary version
    assert refs.get("canary", refs["champion"]) == refs["champion"]
    assert info["CanaryRanking"]["pid"] not in {info["Ranking"]["pid"], info["Retrieval"]["pid"]}

    time.sleep(2 * serving.settings.experiments.canary.sync_interval_s)  # counts published
    status = ops.status()
    assert status["state"] == "running" and status["experiment"] == "t-canary-start"
    assert status["started_at"] == started["started_at"]
    assert status["arms"]["canary"] == {"retrieval": "2", "ranking": "3"}
    assert status["aliases"]["ranking"] == {"champion": "1", "challenger": "3"}
    assert status["served"]["canary"] >= 2 * arms["canary"]
    assert 0.3 < status["realised_share"] < 0.7 and status["configured_share"] == 0.5


def test_failing_canary_is_aborted_and_its_users_see_no_error(serving, ops):
    from app import registry

    assert ops.status()["state"] == "running"
    set_stage("CanaryRanking", fault="error")
    try:
        canary_users = [u for u in USERS if assign_arm(u, 0.5, "t-canary-start") == "canary"]
        champion_users = [u for u in USERS if u not in set(canary_users)][:20]
        feeds = feeds_of(serving, canary_users[:40])
        assert all(code == 200 for _, code, _ in feeds)
        champion_v1 = {
            "retrieval": ref(serving, "retrieval", 1),
            "ranking": ref(serving, "ranking", 1),
        }
        for _, _, body in feeds:  # answered by the champion's stages, a full feed
            assert body["model_versions"] == champion_v1 and len(body["items"]) == 5
        # Answered by the champion, flagged, and counted by the guardrail, until it aborts the
        # canary (the first failures already make the window's error rate significant).
        n = sum("canary_fallback" in b["degraded"] for _, _, b in feeds)
        assert 0 < n < len(feeds)
        seen = [(b["arm"], b["degraded"]) for _, _, b in feeds]
        assert all(arm == "canary" and "canary_fallback" in d for arm, d in seen[:n]), seen
        assert all(arm == "champion" and not d for arm, d in seen[n:]), seen
        for _, code, body in feeds_of(serving, champion_users):
            assert code == 200 and body["arm"] == "champion" and body["degraded"] == []

        time.sleep(2 * serving.settings.experiments.canary.sync_interval_s)
        status = ops.status()
        assert status["state"] == "aborted" and status["effective_share"] == 0.0
        abort = status["abort"]
        assert abort["guardrail"] == "error_rate" and abort["errors"] == n
        assert abort["p_value"] < serving.settings.experiments.canary.guard_alpha
        assert status["canary_failed"] == n
        uri, ms = registry.tracking_uri(serving.settings), serving.settings.models
        tagged = registry.get_version(uri, ms.ranking_model_name, registry.CHALLENGER)
        assert "error_rate" in tagged.tags["canary_abort"]
    finally:
        set_stage("CanaryRanking", fault=None)
        ops.rollback("guardrail")
    assert ops.status()["state"] == "idle"


def _check_load(results: list[tuple[int, dict]]) -> None:
    codes = Counter(code for code, _ in results)
    assert len(results) > 20 and codes == {200: len(results)}, codes
    # Redis shares the 2 CPUs with the load, so its short read timeouts can fire; those answers
    # degrade on feature reads, not on the switch. No answer may name a stage or model failure.
    redis_side = {
        degrade.FEATURES_UNAVAILABLE,
        degrade.FEATURES_CACHED,
        degrade.FEATURES_DEFAULT,
        degrade.ITEM_FEATURES_UNAVAILABLE,
        degrade.REDIS_CIRCUIT_OPEN,
        degrade.TRENDING_LAST_KNOWN,
    }
    degraded = [b["degraded"] for _, b in results if set(b["degraded"]) - redis_side]
    assert not degraded, degraded


def test_promotion_under_load_moves_the_champion_in_place(serving, ops):
    from ray import serve

    from app import registry

    ops.start(CanaryVersions("2", "2"), share=0.3, experiment="t-canary-promote")
    handle = serve.get_deployment_handle("Ranking", app_name="feedray")
    before = handle.replica_info.remote().result()
    with Load(serving) as load:
        ops.promote()
    _check_load(load.results)
    assert Counter(b["arm"] for _, b in load.results)["canary"] > 0
    after = handle.replica_info.remote().result()
    assert (after["pid"], after["started_at"]) == (before["pid"], before["started_at"])
    v2 = {"retrieval": ref(serving, "retrieval", 2), "ranking": ref(serving, "ranking", 2)}
    for _, _, body in feeds_of(serving, USERS[:20]):
        assert body["arm"] == "champion" and body["model_versions"] == v2
    uri, ms = registry.tracking_uri(serving.settings), serving.settings.models
    for name in (ms.retrieval_model_name, ms.ranking_model_name):
        assert str(registry.get_version(uri, name, registry.CHAMPION).version) == "2"
        assert registry.get_version(uri, name, registry.CHALLENGER) is None
    status = ops.status()
    assert status["state"] == "idle" and status["arms"]["champion"] == {
        "retrieval": "2", "ranking": "2"
    }  # fmt: skip


def test_rollback_under_load_leaves_the_champion_untouched(serving, ops):
    from app import registry

    ops.start(CanaryVersions("3", "3"), share=0.3, experiment="t-canary-rollback")
    with Load(serving) as load:
        ops.rollback("test")
    _check_load(load.results)
    served = Counter(b["model_versions"]["ranking"] for _, b in load.results)
    assert served[ref(serving, "ranking", 3)] > 0 and served[ref(serving, "ranking", 2)] > 0
    v2 = {"retrieval": ref(serving, "retrieval", 2), "ranking": ref(serving, "ranking", 2)}
    for _, _, body in feeds_of(serving, USERS[:20]):
        assert body["arm"] == "champion" and body["model_versions"] == v2
    uri, ms = registry.tracking_uri(serving.settings), serving.settings.models
    for name in (ms.retrieval_model_name, ms.ranking_model_name):
        assert str(registry.get_version(uri, name, registry.CHAMPION).version) == "2"
        assert registry.get_version(uri, name, registry.CHALLENGER) is None
        tags = registry.get_version(uri, name, "3").tags
        assert "rolled back: test" in tags["canary_outcome"]


def test_local_stages_hold_the_canary_cores_only_while_it_runs(serving):
    """``stages: local`` in-process (the Ingress's own code path, without a Serve restart):
    the canary's cores load its versions at a share > 0 and are dropped at 0, and a fault in
    the canary's controls leaves the champion's untouched."""
    import asyncio

    from app.features.records import UserFeatures
    from app.serving.types import RequestContext
    from deployments.stages import LocalStages

    stages = LocalStages(serving.settings)
    config = {
        "retrieval": {"models": {"champion": ref(serving, "retrieval", 1)}},
        "ranking": {"models": {"champion": ref(serving, "ranking", 1)}},
        "canary_retrieval": {"models": {"canary": ref(serving, "retrieval", 2)}},
        "canary_ranking": {"models": {"canary": ref(serving, "ranking", 3)}, "fault": "error"},
    }

    async def feed(arm: str):
        user, context = UserFeatures(user_id="u7"), RequestContext()
        candidates = await stages.retrieve(user, context, arm, 50)
        return candidates, await stages.rank(user, context, candidates, arm)

    async def scenario():
        await stages.reconfigure({**config, "canary_share": 0.0})
        assert stages.canary is None
        candidates, _ = await feed("canary")  # no canary: the champion's cores answer
        assert candidates.model_version == ref(serving, "retrieval", 1)
        await stages.reconfigure({**config, "canary_share": 0.2})
        assert stages.canary is not None and stages.canary.retrieval is not stages.retrieval_core
        candidates, ranked = await feed("champion")
        assert ranked.model_version == ref(serving, "ranking", 1)
        with pytest.raises(RuntimeError, match="ranking fault injected"):
            await feed("canary")
        config["canary_ranking"]["fault"] = None
        await stages.reconfigure({**config, "canary_share": 0.2})
        candidates, ranked = await feed("canary")
        assert candidates.model_version == ref(serving, "retrieval", 2)
        assert ranked.model_version == ref(serving, "ranking", 3)
        await stages.reconfigure({**config, "canary_share": 0.0})
        assert stages.canary is None

    try:
        asyncio.run(scenario())
    finally:
        stages.champion.close()


def test_canary_run_rolls_back_an_aborted_canary_before_the_window_ends(serving, ops):
    """``run_canary`` on the real service: a canary whose ranking fails under live traffic is
    aborted by the guardrail during the wait, rolled back, and never evaluated."""
    from app.clock import SimulatedClock
    from app.experiments.canary import run_canary
    from tests.conftest import TEST_AT

    set_stage("CanaryRanking", fault="error")  # idle: no replica yet, the fault waits for it
    clock = SimulatedClock(TEST_AT, anchor_s=0.0, rate=0.0)

    def sleep(seconds: float) -> None:  # one simulated hour per real second of traffic
        time.sleep(1.0)
        clock.advance(seconds)

    evaluated = []
    try:
        with Load(serving) as load:
            result = run_canary(
                ops, evaluated.append, CanaryVersions("3", "3"), share=0.5,
                experiment="t-canary-run", window_s=48 * 3600.0, poll_s=3600.0,
                clock=clock, sleep=sleep,
            )  # fmt: skip
    finally:
        set_stage("CanaryRanking", fault=None)
    assert result.outcome == "aborted" and not evaluated
    assert result.abort["guardrail"] == "error_rate"
    assert result.run.ended_at - result.run.started_at < 48 * 3600.0
    assert ops.status()["state"] == "idle"
    codes = Counter(code for code, _ in load.results)
    assert codes == {200: len(load.results)}, codes
    assert any("canary_fallback" in b["degraded"] for _, b in load.results)
