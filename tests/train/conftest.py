"""A private auth token for this test run's local Ray cluster.

Ray 2.5x clusters authenticate workers with a token read from ``~/.ray/auth_token`` unless
``RAY_AUTH_TOKEN`` is set. On a host shared with other local clusters, another ``ray.init``
rewrites that file, after which this cluster's newly started worker processes fail to
register (raylet: "have not registered within the timeout") and a Ray Train run waits
forever. Setting the token in the environment (inherited by raylet and workers) before
``ray_local`` starts the cluster pins it.
"""

import os
import secrets

os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
