"""The collector driver: N actors in one consumer group, progress on stderr, one report."""

from __future__ import annotations

import sys
import time
from collections import Counter as CounterDict

from app.config import CollectorSettings, FeedraySettings
from app.ray_runtime import connect_ray
from data.collector.actors import start_collector_actors
from data.collector.report import CollectorReport, caught_up, group_progress


def run_collectors(
    settings: FeedraySettings,
    workers: int = 1,
    until_idle: bool = False,
    *,
    config: CollectorSettings | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    idle_check_s: float = 0.5,
) -> CollectorReport:
    """Run ``workers`` collector actors; with ``until_idle`` stop once the group has committed
    up to the end offsets seen at start. Prints progress (events/s, lag per partition) to stderr."""
    import ray

    config = config or settings.collector
    connect_ray(settings)
    start = time.time()
    targets = {p: high for p, (_, high, _) in group_progress(settings, config.group_id).items()}
    actors = start_collector_actors(settings, workers, config)
    runs = [a.run.remote(max_seconds) for a in actors]
    last_print = time.monotonic()
    last_events = 0
    lag: dict[int, int] = {}
    try:
        while True:
            done, _ = ray.wait(runs, num_returns=len(runs), timeout=idle_check_s)
            if len(done) == len(runs):
                break
            if until_idle:
                state = group_progress(settings, config.group_id)
                if caught_up(state, targets):
                    break
            now = time.monotonic()
            if progress and now - last_print >= config.progress_every_s:
                stats = ray.get([a.stats.remote() for a in actors])
                events = sum(s["events"] for s in stats)
                state = group_progress(settings, config.group_id)
                lag = {p: high - max(committed, low) for p, (low, high, committed) in state.items()}
                rate = (events - last_events) / (now - last_print)
                print(
                    f"collector: {events:,} events, {rate:,.0f} events/s, "
                    f"rejected {sum(sum(s['rejected'].values()) for s in stats):,}, "
                    f"lag {' '.join(f'p{p}={v:,}' for p, v in sorted(lag.items()))}",
                    file=sys.stderr,
                    flush=True,
                )
                last_print, last_events = now, events
    except KeyboardInterrupt:
        print("collector: stopping", file=sys.stderr)
    finally:
        for actor in actors:
            try:
                actor.stop.remote()
            except Exception:  # noqa: BLE001
                pass
    stats = []
    for actor, run in zip(actors, runs, strict=True):
        try:
            stats.append(ray.get(run))
        except (
            ray.exceptions.RayActorError
        ) as error:  # a worker died: its partitions were replayed by the others
            print(f"collector: a worker died: {error}", file=sys.stderr)
        ray.kill(actor)
    seconds = time.time() - start
    state = group_progress(settings, config.group_id)
    lag = {p: high - max(committed, low) for p, (low, high, committed) in state.items()}
    events = sum(s["events"] for s in stats)
    rejected: CounterDict[str] = CounterDict()
    for s in stats:
        rejected.update(s["rejected"])
    firsts = [s["first_batch_at"] for s in stats if s["first_batch_at"]]
    lasts = [s["last_batch_at"] for s in stats if s["last_batch_at"]]
    busy = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    return CollectorReport(
        workers=workers,
        group_id=config.group_id,
        events=events,
        messages=sum(s["messages"] for s in stats),
        rejected=dict(rejected),
        skipped_replays=sum(s["skipped_replays"] for s in stats),
        redis_retries=sum(s["redis_retries"] for s in stats),
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1) if seconds > 0 else 0.0,
        processing_events_per_s=round(events / busy, 1) if busy > 0 else 0.0,
        lag=lag,
    )
