"""The ingress replica's canary state: the guardrail's abort sets the share to 0 at once and
holds for that run; a new run starts afresh. Redis here is a closed port (the shared record
is covered by tests/deployments/test_canary.py against the real one)."""

from __future__ import annotations

import pytest

from app.clock import FixedClock
from app.serving.canary_arm import CanaryArm
from tests.conftest import TEST_AT, scratch_settings


@pytest.fixture
def arm(tmp_path):
    # Nothing listens on the Redis port; no background sync during a test.
    settings = scratch_settings(tmp_path, experiments={"canary": {"sync_interval_s": 3600}})
    aborts: list[dict] = []
    arm = CanaryArm(settings, FixedClock(TEST_AT), aborts.append)
    arm.aborts = aborts
    yield arm
    arm.close()


RUN = {"canary_share": 0.5, "experiment": "exp", "canary_started_at": "t1"}


def test_breach_sends_every_user_back_to_the_champion(arm):
    arm.reconfigure(RUN)
    users = [f"u{i}" for i in range(400)]
    assert 150 < sum(arm.arm_of(u) == "canary" for u in users) < 250
    for _ in range(arm.settings.experiments.canary.guard_min_requests):
        arm.served_by("canary")
        arm.observe(failed=True, latency_ms=3.0)
    (record,) = arm.aborts
    assert record["guardrail"] == "error_rate" and record["run_id"] == "t1"
    assert record["at"] == TEST_AT.timestamp() and record["experiment"] == "exp"
    assert all(arm.arm_of(u) == "champion" for u in users)
    report = arm.report()
    assert report["effective_share"] == 0.0 and report["configured_share"] == 0.5
    assert report["served"] == {"canary": 20, "canary_failed": 20}
    arm.reconfigure(RUN)  # the same run re-applied (a replica reconfigured): still aborted
    assert arm.share == 0.0 and len(arm.aborts) == 1
    arm.reconfigure({**RUN, "canary_started_at": "t2"})  # `canary start` again: a new run
    assert arm.share == 0.5 and arm.abort is None and not arm.guard.outcomes


def test_sync_keeps_counts_while_redis_is_down(arm):
    arm.reconfigure(RUN)
    arm.served_by("champion")
    arm.sync()
    assert arm.counts["requests:champion"] == 1  # kept for the next sync


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_1_is_refused(arm, share):
    with pytest.raises(ValueError, match="canary_share"):
        arm.reconfigure({"canary_share": share})
