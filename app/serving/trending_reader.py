"""The fallback lists of one ingress replica: trending and newest, over Redis, kept in memory."""

from __future__ import annotations

import logging

from app.config import ServingSettings
from app.serving import degrade
from app.serving.assembly import TrendingEntry
from app.serving.cache import TTLCache
from app.serving.fallback import ALL, NEWEST, ListKey, fallback_chain, gather
from app.serving.feature_lookup import FeatureLookup

log = logging.getLogger(__name__)


class TrendingReader:
    """The fallback chain's lists (``app.serving.fallback``), cached per replica.

    One Redis read per level of the chain for the lists not cached, behind the replica's
    Redis breaker. The last non-empty contents of every list stay in memory without expiry
    and are served whenever Redis is down, the breaker is open or the list is gone.
    """

    def __init__(self, lookup: FeatureLookup, serving: ServingSettings) -> None:
        self.lookup = lookup  # shares the store and the circuit breaker
        self.serving = serving
        self.cache: TTLCache[ListKey, list[TrendingEntry]] = TTLCache(
            256, serving.trending_cache_ttl_s
        )
        self.last_known: dict[ListKey, list[TrendingEntry]] = {}

    def _read_level(
        self, level: list[ListKey], kinds: set[str]
    ) -> dict[ListKey, list[TrendingEntry]]:
        found = {k: v for k in level if (v := self.cache.get(k)) is not None}
        missing = [k for k in level if k not in found]
        if missing and not self.lookup.breaker.allow():
            kinds.add(degrade.REDIS_CIRCUIT_OPEN)
        elif missing:
            try:
                fetched = self.lookup.store.read_lists(missing, self.serving.trending_fetch)
            except Exception as error:  # noqa: BLE001
                log.warning("fallback list read failed: %s", error)
                self.lookup.breaker.failed()
            else:
                self.lookup.breaker.succeeded()
                for key, entries in zip(missing, fetched, strict=True):
                    self.cache.put(key, entries)
                    if entries:
                        self.last_known[key] = entries
                    found[key] = entries
        for key in level:
            if not found.get(key) and self.last_known.get(key):
                found[key] = self.last_known[key]
                kinds.add(degrade.TRENDING_LAST_KNOWN)
        return found

    def gather(
        self, keys: list[tuple[str, str]], need: int, newest: bool = True
    ) -> tuple[list[TrendingEntry], list[str]]:
        """(entries in chain order, degraded kinds) for ``keys`` ((type, language|all) pairs)."""
        kinds: set[str] = set()
        got = gather(fallback_chain(keys, newest), lambda lv: self._read_level(lv, kinds), need)
        if NEWEST in got.sources:
            kinds.add(degrade.NEWEST_FALLBACK)
        if not got.entries:
            kinds.add(degrade.TRENDING_UNAVAILABLE)
        return got.entries, sorted(kinds)

    def warm(self) -> None:
        """One read of the broadest lists (fills the replica's memory before it serves)."""
        self.gather([("VIDEO", ALL), ("AUDIO", ALL)], 1, newest=True)
