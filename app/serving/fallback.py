"""The fallback chain for feeds the models cannot serve (pure logic; the reads are the caller's).

For the (content type, language) pairs a request wants (``assembly.trending_keys``) the
lists are tried level by level, most specific first:

1. trending(type, language)
2. trending(type)
3. trending(all types, all languages), when the request wants both types
4. newest(type): the catalogue's newest items, kept by every catalogue upsert

and merged (first occurrence wins) until the feed has enough items to fill it after the
re-rank's exclusions and creator caps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.serving.assembly import TrendingEntry

TRENDING = "trending"
NEWEST = "newest"
ALL = "all"

ListKey = tuple[str, str, str]  # (TRENDING | NEWEST, content type | ALL, language | ALL)


def fallback_chain(keys: Sequence[tuple[str, str]], newest: bool = True) -> list[list[ListKey]]:
    """The chain's levels for ``keys`` ((type, language | ALL) pairs), duplicates dropped."""
    levels = [
        [(TRENDING, t, lang) for t, lang in keys],
        [(TRENDING, t, ALL) for t, _ in keys],
        # One type only: the per-type list already holds every item of it the global one has.
        [(TRENDING, ALL, ALL)] if len({t for t, _ in keys}) > 1 else [],
    ]
    if newest:
        levels.append([(NEWEST, t, ALL) for t, _ in keys])
    seen: set[ListKey] = set()
    out: list[list[ListKey]] = []
    for level in levels:
        fresh = [k for k in dict.fromkeys(level) if k not in seen]
        seen.update(fresh)
        if fresh:
            out.append(fresh)
    return out


def wanted(limit: int, excluded: int) -> int:
    """Entries to gather: ``limit`` after ``excluded`` (recently consumed) items, with room
    for the creator cap and the type mix of the re-rank (three times the limit)."""
    return excluded + 3 * limit


@dataclass
class Gathered:
    entries: list[TrendingEntry]
    sources: set[str]  # TRENDING / NEWEST: which kinds of list contributed


def gather(
    levels: Sequence[Sequence[ListKey]],
    read: Callable[[Sequence[ListKey]], Mapping[ListKey, Sequence[TrendingEntry]]],
    need: int,
) -> Gathered:
    """Walk ``levels`` (``read`` fetches one level's lists) until ``need`` distinct entries."""
    seen: set[str] = set()
    entries: list[TrendingEntry] = []
    sources: set[str] = set()
    for level in levels:
        if len(entries) >= need:
            break
        lists = read(level)
        for key in level:
            added = 0
            for entry in lists.get(key, ()):
                if entry.media_id not in seen:
                    seen.add(entry.media_id)
                    entries.append(entry)
                    added += 1
            if added:
                sources.add(key[0])
    return Gathered(entries, sources)
