"""Both placements of the serving stages implement the ``Stages`` protocol the ingress uses.

Import cycles and upward imports are checked for the whole project in ``tests/test_layers.py``.
"""

from __future__ import annotations


def test_both_placements_implement_the_stages_protocol():
    from app.serving.stages import Stages
    from deployments.stages import LocalStages, RemoteStages

    assert isinstance(RemoteStages(None, None), Stages)
    local = LocalStages.__new__(LocalStages)  # the protocol's methods, without loading models
    assert isinstance(local, Stages)
