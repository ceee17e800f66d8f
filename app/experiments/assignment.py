"""Stable arm assignment: champion or canary, by a keyed hash of the user id.

Python's ``hash()`` is salted per process, so two replicas would disagree; BLAKE2b with
the experiment name as key is stable across processes, machines and restarts, and a
new experiment name reshuffles users so a canary never lands on the same 5 % twice.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Arm = Literal["champion", "canary"]
_SCALE = float(2**64)


def unit_hash(user_id: str, experiment: str) -> float:
    """A uniform number in [0, 1) that depends only on (experiment, user_id)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=experiment.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign_arm(user_id: str, canary_share: float, experiment: str = "default") -> Arm:
    """``canary`` for a stable ``canary_share`` of users, ``champion`` for the rest."""
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"canary_share must be in [0, 1], got {canary_share}")
    return "canary" if unit_hash(user_id, experiment) < canary_share else "champion"
