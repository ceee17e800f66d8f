"""Settings of the retraining pipeline and the types its last step is called with.

``train.pipeline`` builds a pair of versions (a two-tower with its FAISS index, and the ranker
trained on that two-tower's scores); only when every step succeeded does it alias both
``challenger`` and call, with one ``NewVersions``, the ``Release`` callable that
``settings.pipeline.release`` names: ``print`` (the default, ``train.pipeline.print_release``)
writes the two versions and the ``feedray canary run`` command line to stdout and starts no
canary; ``canary`` (``train.pipeline.canary_release``) runs that command, the canary loop
(start, window, evaluation, audit, promotion or rollback); any other value is a
``module:function``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field


class PipelineSettings(BaseModel):
    """Scheduled retraining (``feedray pipeline run|schedule``). ``FeedraySettings.pipeline``."""

    interval_s: float = Field(86_400.0, gt=0)  # cadence of `feedray pipeline schedule` (daily)
    # The callable a successful run's versions are passed to: "print" writes the
    # `feedray canary run` command line to stdout, "canary" runs that command, any other value
    # is a module:function.
    release: str = "print"
    experiment: str = "feedray-pipeline"  # MLflow experiment of the pipeline's own runs


@dataclass(frozen=True)
class NewVersions:
    """The versions one pipeline run built, both already aliased ``challenger``."""

    retrieval_model: str
    retrieval_version: int  # its FAISS index is logged as ``index/`` in this version's run
    ranking_model: str
    ranking_version: int  # trained on ``retrieval_version``'s retrieval_score
    pipeline_run: str  # the pipeline run id (record file name, MLflow run name suffix)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Release(Protocol):
    def __call__(self, versions: NewVersions) -> dict[str, Any] | None:
        """Start the canary of ``versions``; what it returns (JSON-able) goes in the record."""
        ...
