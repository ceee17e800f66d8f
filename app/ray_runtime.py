"""Joining Ray: the stack's head when it runs, else a private local instance.

Ray 2.60 enables token authentication for new local clusters, but a driver that names an
explicit address never turns it on by itself; the platform therefore sets the mode it
started the head with (``settings.ray.auth_mode``) before connecting.
"""

from __future__ import annotations

import os
import secrets

from app.config import FeedraySettings
from app.stack.process import port_open


def connect_ray(
    settings: FeedraySettings, num_cpus: int | None = None, **init_kwargs: object
) -> None:
    """``ray.init`` once per process: ``RAY_ADDRESS``, else the stack's head, else a local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address or port_open(settings.ray.host, settings.ray.port):
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = settings.ray.auth_mode
            # Ray caches its config when first imported; reload it so this process sees the mode.
            from ray._raylet import Config

            Config.initialize("")
        ray.init(address=address or settings.ray.address, configure_logging=False, **init_kwargs)
    else:
        # A private token for this process' own cluster, inherited by its raylet and workers,
        # so another cluster rewriting ~/.ray/auth_token cannot lock our workers out.
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        ray.init(
            address="local",
            num_cpus=num_cpus or settings.ray.num_cpus,
            include_dashboard=False,
            configure_logging=False,
            **init_kwargs,
        )
