"""Values that travel between the serving stages (pickled across Serve hops; kept compact).

The user travels as ``app.features.records.UserFeatures`` (the online store's record).
Candidates travel as parallel numpy arrays (``app.serving.catalogue.CatalogueColumns``), not
lists of objects: 500 candidates pickle to about 28 KB, which keeps the two hops of the hot
path cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.serving.catalogue import CatalogueColumns


@dataclass(frozen=True)
class RequestContext:
    """Request-time context: what a cold-start user is described by."""

    language: str | None = None
    content_type: str | None = None  # VIDEO | AUDIO filter asked for


@dataclass
class CandidateBatch:
    """Retrieval output: ``n`` candidates, their catalogue attributes and retrieval scores."""

    items: CatalogueColumns  # the n candidates, in the order retrieval selected them
    scores: npt.NDArray[np.float32]  # [n] retrieval scores, row for row
    model_version: str = ""
    index_size: int = 0
    compute_ms: float = 0.0  # the stage's compute for the batch this request was part of
    batch_size: int = 1  # requests computed together (Serve batching)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class RankedBatch:
    """Ranking output: one score per candidate, same order as the CandidateBatch."""

    scores: npt.NDArray[np.float32]
    model_version: str = ""
    compute_ms: float = 0.0  # the stage's compute for the batch this request was part of
    batch_size: int = 1  # requests computed together (Serve batching)
    feature_misses: int = 0  # candidates without online features (defaults used)
    features_unavailable: bool = False  # the item feature read failed as a whole
