"""Degraded-mode bookkeeping: which fallback happened, named the same everywhere."""

from __future__ import annotations

# Every kind a response's ``degraded`` list (and the fallback metric) can carry.
FEATURES_UNAVAILABLE = "features_unavailable"  # Redis unreachable for the user's features
FEATURES_CACHED = "features_cached"  # ... served from the replica's last-known cache
FEATURES_DEFAULT = "features_default"  # ... nothing cached: defaults (cold-start path)
ITEM_FEATURES_UNAVAILABLE = "item_features_unavailable"  # ranking ran on feature defaults
TRENDING_UNAVAILABLE = "trending_unavailable"  # trending list could not be read
NO_CANDIDATES = "no_candidates"  # retrieval answered with nothing (empty index, all excluded)
REDIS_CIRCUIT_OPEN = "redis_circuit_open"  # the replica's Redis breaker is open: not even tried
TRENDING_LAST_KNOWN = "trending_last_known"  # a fallback list from the replica's memory
NEWEST_FALLBACK = "newest_fallback"  # trending had too few items: the newest items filled in
CANARY_FALLBACK = "canary_fallback"  # the canary's stages failed: the champion's answered
KINDS = (
    NO_CANDIDATES,
    FEATURES_UNAVAILABLE,
    FEATURES_CACHED,
    FEATURES_DEFAULT,
    ITEM_FEATURES_UNAVAILABLE,
    TRENDING_UNAVAILABLE,
    REDIS_CIRCUIT_OPEN,
    TRENDING_LAST_KNOWN,
    NEWEST_FALLBACK,
    CANARY_FALLBACK,
    "retrieval_unavailable",
    "retrieval_timeout",
    "ranking_unavailable",
    "ranking_timeout",
)


def stage_failure(stage: str, error: BaseException) -> str:
    """``<stage>_timeout`` for a budget overrun, ``<stage>_unavailable`` for anything else."""
    return f"{stage}_timeout" if isinstance(error, TimeoutError) else f"{stage}_unavailable"


class Degradations:
    """An ordered set of degraded kinds for one request."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def add(self, kind: str) -> None:
        if kind not in self.kinds:
            self.kinds.append(kind)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def __contains__(self, kind: str) -> bool:
        return kind in self.kinds
