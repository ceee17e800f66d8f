"""Arm assignment is stable across processes and hits the configured share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.experiments.assignment import assign_arm, unit_hash


def test_share_of_canary_users_matches_configuration() -> None:
    users = [f"u{i}" for i in range(100_000)]
    share = sum(assign_arm(u, 0.05) == "canary" for u in users) / len(users)
    assert share == pytest.approx(0.05, abs=0.003)  # binomial sd ~0.0007


def test_assignment_is_stable_across_processes() -> None:
    users = [f"u{i}" for i in range(200)]
    here = [assign_arm(u, 0.3, "exp-1") for u in users]
    code = (
        "from app.experiments.assignment import assign_arm;"
        f"print(','.join(assign_arm(u, 0.3, 'exp-1') for u in {users!r}))"
    )
    there = (
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": "123", "PATH": ""},
        )
        .stdout.strip()
        .split(",")
    )
    assert here == there


def test_growing_the_share_keeps_existing_canary_users() -> None:
    users = [f"u{i}" for i in range(5_000)]
    small = {u for u in users if assign_arm(u, 0.05) == "canary"}
    large = {u for u in users if assign_arm(u, 0.20) == "canary"}
    assert small <= large and len(large) > 3 * len(small)


def test_experiments_shuffle_users_independently() -> None:
    users = [f"u{i}" for i in range(20_000)]
    a = {u for u in users if assign_arm(u, 0.1, "exp-a") == "canary"}
    b = {u for u in users if assign_arm(u, 0.1, "exp-b") == "canary"}
    assert len(a & b) / len(a) == pytest.approx(0.1, abs=0.03)
    assert 0.0 <= unit_hash("u1", "x") < 1.0


@pytest.mark.parametrize("share", [-0.01, 1.01])
def test_invalid_share_is_rejected(share: float) -> None:
    with pytest.raises(ValueError, match="canary_share"):
        assign_arm("u1", share)


@pytest.mark.parametrize("share, experiment", [(0.05, "default"), (0.2, "exp-b"), (0.5, "x")])
def test_realised_share_is_inside_the_binomial_999_interval(share: float, experiment: str) -> None:
    """Over 200,000 user ids the canary count lies in the central 99.9 % interval of
    Binomial(n, share), what an unbiased hash gives."""
    from scipy.stats import binom

    n = 200_000
    canary = sum(assign_arm(f"user-{i}", share, experiment) == "canary" for i in range(n))
    low, high = binom.interval(0.999, n, share)
    assert low <= canary <= high, (canary, low, high)
