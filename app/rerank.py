"""Feed re-rank: content-type preference, diversity, creator caps, recently-consumed filter.

Pure functions over the ranked candidates. The user's preferred content type decides
which type fills the feed; ``diversity`` in [0, 1] sets how many slots go to the other
type (``round(limit * diversity * MAX_CROSS_TYPE_SHARE)``), spread evenly down the
feed rather than left at the bottom. The count is a non-decreasing step function of
``diversity``, so the cross-type share rises monotonically. A MIXED user gets score
order. The other type only backfills beyond its quota when the preferred type runs out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.schemas import ContentType, PreferredContentType

MAX_CROSS_TYPE_SHARE = 0.5  # at diversity 1 half of the feed is the non-preferred type


@dataclass(frozen=True)
class RerankInput:
    """What the re-rank orders, as parallel arrays of length n (any order; ``scores`` decides):
    retrieval candidates, fallback-list entries or a blend of both (``app.serving.assembly``)."""

    media_ids: Sequence[str]
    scores: npt.NDArray[np.float64]
    content_types: Sequence[str]  # "VIDEO" | "AUDIO"
    creator_ids: Sequence[str]

    def __post_init__(self) -> None:
        n = len(self.media_ids)
        if not (len(self.scores) == len(self.content_types) == len(self.creator_ids) == n):
            raise ValueError("candidate arrays must have the same length")


def cross_type_slots(limit: int, diversity: float) -> int:
    """How many of ``limit`` slots go to the non-preferred type at this diversity."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity}")
    return int(np.floor(limit * diversity * MAX_CROSS_TYPE_SHARE + 0.5))


def _spread_positions(limit: int, count: int) -> set[int]:
    """``count`` positions spread evenly over ``range(limit)``, the first one not at the top."""
    return {int((k + 1) * limit / (count + 1)) for k in range(count)} if count else set()


def rerank(
    candidates: RerankInput,
    *,
    limit: int,
    preferred_type: PreferredContentType | str,
    diversity: float,
    max_per_creator: int,
    exclude: Collection[str] = (),
    content_type: ContentType | str | None = None,
) -> list[int]:
    """Indices into ``candidates`` forming the feed, best first.

    Guarantees: at most ``limit`` items, no duplicate media ids, none in ``exclude``, at most
    ``max_per_creator`` per creator, only ``content_type`` when given.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if max_per_creator < 1:
        raise ValueError("max_per_creator must be at least 1")
    n_cross = cross_type_slots(limit, diversity)
    preferred = PreferredContentType(preferred_type)
    only = ContentType(content_type) if content_type is not None else None

    order = np.argsort(-np.asarray(candidates.scores, dtype=np.float64), kind="stable")
    seen: set[str] = set(exclude)
    eligible: list[int] = []
    for index in order:
        media_id = candidates.media_ids[index]
        if media_id in seen:
            continue
        if only is not None and candidates.content_types[index] != only.value:
            continue
        seen.add(media_id)
        eligible.append(int(index))

    per_creator: dict[str, int] = {}

    def take(queue: deque[int]) -> int | None:
        while queue:
            index = queue.popleft()
            creator = candidates.creator_ids[index]
            if per_creator.get(creator, 0) < max_per_creator:
                per_creator[creator] = per_creator.get(creator, 0) + 1
                return index
        return None

    if preferred is PreferredContentType.MIXED or only is not None:
        queue = deque(eligible)
        feed: list[int] = []
        while len(feed) < limit and (picked := take(queue)) is not None:
            feed.append(picked)
        return feed

    main = deque(i for i in eligible if candidates.content_types[i] == preferred.value)
    cross = deque(i for i in eligible if candidates.content_types[i] != preferred.value)
    cross_positions = _spread_positions(limit, n_cross)
    feed = []
    while len(feed) < limit:
        first, second = (cross, main) if len(feed) in cross_positions else (main, cross)
        picked = take(first)
        if picked is None:
            picked = take(second)  # backfill when one type runs out
        if picked is None:
            break
        feed.append(picked)
    return feed
