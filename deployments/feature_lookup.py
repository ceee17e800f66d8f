"""The user feature lookup behind its own Serve hop (opt-in: the app builder's ``features_hop``).

By default ``app.serving.feature_lookup.FeatureLookup`` runs inside the ingress replica:
one Serve hop costs more than the lookup's one pipelined Redis round trip.
"""

from __future__ import annotations

from ray import serve

from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving.feature_lookup import FeatureLookup


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class FeatureLookupDeployment:
    """The same lookup behind its own Serve hop."""

    def __init__(self, settings: dict) -> None:
        self.lookup_impl = FeatureLookup(FeedraySettings(**settings))

    def lookup(self, user_id: str) -> tuple[UserFeatures, list[str], str | None]:
        return self.lookup_impl.lookup(user_id)
