"""Print the memory footprint and generation time of a world as one JSON line.

python -m data.simulate.size_report --users 1000000 --items 3000000
"""

from __future__ import annotations

import resource
import time

import orjson
import typer

from data.simulate.world import World, WorldConfig, world_memory_bytes


def size_report(
    users: int = typer.Option(1_000_000, "--users", min=1),
    items: int = typer.Option(3_000_000, "--items", min=1),
    creators: int = typer.Option(50_000, "--creators", min=1),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Generate a world and report {users, items, creators, bytes, seconds, peak_rss_bytes}."""
    started = time.perf_counter()
    world = World.generate(
        WorldConfig(seed=seed, n_users=users, n_items=items, n_creators=creators)
    )
    seconds = time.perf_counter() - started
    report = {
        "users": world.n_users,
        "items": world.n_items,
        "creators": world.n_creators,
        "bytes": world_memory_bytes(world),
        "seconds": round(seconds, 3),
        # ru_maxrss is KiB on Linux: the process peak, temporaries included.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    typer.run(size_report)
