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


def test_batched_outside_a_replica_is_a_batch_of_one_per_call():
    """Serve's batching runs only inside a replica; stages built in-process still answer,
    each call as its own batch, in order."""
    import asyncio

    from app.config import ServingSettings
    from deployments.stages import batched

    sizes: list[int] = []

    async def many(xs, ys):
        sizes.append(len(xs))
        return [x + y for x, y in zip(xs, ys, strict=True)]

    async def scenario():
        call = batched(ServingSettings(batch_max_size=4), many)
        return await asyncio.gather(*(call(i, 10 * i) for i in range(6)))

    assert asyncio.run(scenario()) == [0, 11, 22, 33, 44, 55]
    assert sizes == [1] * 6
