"""``feedray bench``: build the world through the platform's code, run every section, report.

    feedray bench --items 3000000 --users 1000000 [--lock-file /tmp/feedray-heavy.lock]

A private Redis + Kafka (``bench.common.private_stack``) and a private MLflow on SQLite are
filled by ``train.bootstrap`` (``bench.feed_app.bootstrapped``): the catalogue and content
features written to Redis through the store's write path, ``days`` of simulated events
applied through ``EventBatch`` / ``OnlineStore.apply`` (user features), a two-tower and a
DLRM ranker trained in-process on the point-in-time training set of those events, and the
FAISS index over every item (kind and nprobe / efSearch chosen by ``app.index.build_index``
for recall@k >= ``models.index.target_recall``). The sections then run in order, each timed;
with ``--lock-file`` each holds an exclusive ``flock`` on that file while it runs (the stack
stays up between sections). Output: ``<results_dir>/scale_<items>.json`` and the Markdown.
"""

from __future__ import annotations

import fcntl
import gc
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from app.bench_settings import BenchSettings
from app.config import FeedraySettings

NOT_MEASURED = [
    "ingestion under load (collector, Kafka -> Parquet): bench/bench_ingest_under_load.py, "
    "at 20,000 items",
    "faults under load (a Redis outage, a killed Ranking replica, a broker restart): "
    "bench/bench_faults.py, at 20,000 items",
    "the Ray Train jobs (train.retrieval, train.ranking) on this world: the world's models are "
    "trained in-process; bench/bench_training.py times the Ray Train jobs on a simulated "
    "world of the same size",
]

STACK_PROCESSES = ("redis-server", "java")  # the private stack's servers, not the build's


@contextmanager
def _held(lock_file: Path | None):
    if lock_file is None:
        yield
        return
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_suite(
    bench: BenchSettings,
    *,
    http: bool = True,
    lock_file: Path | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    stack=None,
) -> tuple[dict, Path, Path]:
    """Build, measure, write. (record, JSON path, Markdown path)."""
    from bench.common import private_stack
    from bench.suite.features import feature_section
    from bench.suite.feed_http import http_section
    from bench.suite.memory import memory_section, rss_mb
    from bench.suite.pipeline import pipeline_section
    from bench.suite.ranking import ranking_section
    from bench.suite.report import commit, machine, markdown, write_json

    record: dict = {
        "benchmark": f"scale_{bench.items}",
        "command": command,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "config": bench.model_dump(mode="json"),
        "note": "other sessions may have been present (idle or not) on the host during the run",
        "sections_s": {},
        "errors": {},
        "not_measured": list(NOT_MEASURED) + ([] if http else ["HTTP section (--no-http)"]),
    }
    started = time.perf_counter()
    json_path = Path(bench.results_dir) / f"scale_{bench.items}.json"
    md_path = Path(bench.markdown)

    def write() -> None:
        record["total_s"] = time.perf_counter() - started
        write_json(record, json_path)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown(record, _shown(json_path)))

    def section(name: str, fn: Callable[[], object]) -> object:
        """Run one section, timed; a failure is recorded and the next sections still run."""
        log(f"bench: {name} ...")
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - reported in the record, the suite goes on
            record["errors"][name] = "".join(traceback.format_exception(error))[-4_000:]
            log(f"bench: {name} failed: {error!r}")
            return None
        finally:
            record["sections_s"][name] = time.perf_counter() - t0
            log(f"bench: {name} done in {record['sections_s'][name]:.1f}s")
            write()

    with ExitStack() as held:
        # Hold 1: the stack's start and the world build.
        hold = held.enter_context(ExitStack())
        hold.enter_context(_held(lock_file))
        settings = held.enter_context(stack or private_stack(("redis", "kafka")))
        built = section("world", lambda: _world(settings, bench))
        if built is None:
            return record, json_path, md_path
        settings, record["world"], now_s = built
        hold.close()

        # Hold 2: the in-process sections.
        with _held(lock_file):
            record["features"] = section(
                "features",
                lambda: feature_section(
                    settings,
                    bench.users,
                    bench.items,
                    now_s,
                    bench.reads,
                    bench.feast_python,
                    bench.feast_reads,
                ),
            )
            users, user_ids = _users(settings, bench.users)
            retrieval = ranking = None
            out = section("retrieval", lambda: _retrieval(settings, users, now_s, bench))
            if out is not None:
                record["retrieval"], retrieval = out
                out = section(
                    "ranking",
                    lambda: ranking_section(settings, users, retrieval, bench.queries, bench.k),
                )
            if out is not None:
                record["ranking"], ranking = out
                record["pipeline"] = section(
                    "pipeline",
                    lambda: pipeline_section(
                        settings, user_ids, retrieval, ranking, bench.queries, bench.k
                    ),
                )
            if retrieval is not None:
                index = retrieval.states["champion"].index
                record["memory"] = section(
                    "memory", lambda: memory_section(settings, index, bench.items, bench.users)
                )
                retrieval.close()
            retrieval = ranking = None  # released before Serve loads its own copies
            gc.collect()
            if record.get("memory"):
                record["memory"]["process_after_release"] = rss_mb()

        # Hold 3: Ray Serve over HTTP.
        if http:
            with _held(lock_file):
                record["http"] = section("http", lambda: http_section(settings, bench))
        else:
            record["http"] = {"status": "not run (--no-http)"}
    write()
    return record, json_path, md_path


def _world(settings: FeedraySettings, bench: BenchSettings):
    """(settings with the world's MLflow, the world's figures, the world's now in s).

    ``train.bootstrap`` on a private MLflow (SQLite in the stack's state dir), as
    ``bench.feed_app.bootstrapped`` does, with the bench's sessions per user-day and items
    per session.
    """
    import ray

    from app.stack.kafka import ensure_topics
    from bench.common import PssSampler
    from data.simulate.world import WorldConfig
    from train.bootstrap import bootstrap

    ensure_topics(settings)
    uri = f"sqlite:///{settings.state_dir.resolve()}/mlflow.db"
    settings = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": uri})}
    )
    world = WorldConfig(
        seed=5,
        n_users=bench.users,
        n_items=bench.items,
        n_creators=max(bench.items // 50, 1),
        sessions_per_day=bench.sessions_per_day,
        session_items=bench.session_items,
    )
    lines: list[str] = []
    sampler = PssSampler(exclude=STACK_PROCESSES)
    t0 = time.perf_counter()
    try:
        boot = bootstrap(settings, world, bench.days, bench.epochs, log=lines.append)
    finally:
        sampler.stop()
    build_s = time.perf_counter() - t0
    peak_mb, start = {"build": sampler.peak_bytes() / 2**20}, 0.0
    for phase, seconds in boot.seconds.items():  # the phases run one after the other
        peak_mb[phase] = sampler.peak_bytes(start, start + seconds) / 2**20
        start += seconds
    figures = {
        "items": boot.world.n_items,
        "users": boot.world.n_users,
        "events": boot.events,
        "phases_s": boot.seconds,
        "build_s": build_s,
        "world_config": world.model_dump(mode="json"),
        "index": boot.models["index"].params.model_dump(),
        "versions": boot.versions,
        "bootstrap_log": lines,  # event counts, training losses per epoch, index recall
        "training": boot.training,
        "peak_pss_mb": peak_mb,
        "peak_pss_note": "PSS of this process and its descendants (Ray's raylet, GCS and "
        "workers: the training-set build runs there) sampled every 0.5 s, Redis and Kafka left "
        "out; in-process training on the training set's pandas frame, not Ray Train",
    }
    now_s = boot.now_s
    boot.models.clear()  # the served cores load what was registered
    del boot
    gc.collect()
    ray.shutdown()  # the Ray the training-set build joined; the HTTP section starts its own
    return settings, figures, now_s


def _shown(path: Path) -> str:
    from bench.common import PROJECT_ROOT

    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _users(settings: FeedraySettings, n_users: int, sample: int = 2_048):
    """(online features of sampled users, those with features first; their ids)."""
    from app.serving.feature_lookup import FeatureLookup

    rng = np.random.default_rng(1)
    ids = [f"u{u}" for u in rng.choice(n_users, min(sample, n_users), replace=False)]
    lookup = FeatureLookup(settings)
    features = [lookup.lookup(u)[0] for u in ids]
    known = [f for f in features if f.known]
    return (known or features), ids


def _retrieval(settings, users, now_s, bench: BenchSettings):
    from bench.suite.retrieval import retrieval_section

    return retrieval_section(settings, users, now_s, bench.queries, bench.exact_queries, bench.k)


def bench_command(
    items: Annotated[
        int | None, typer.Option(help="Items in the world (default bench.items).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Users in the world (default bench.users).")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Simulated days of events (default bench.days).")
    ] = None,
    http: Annotated[
        bool, typer.Option("--http/--no-http", help="Run the HTTP section (Ray Serve).")
    ] = True,
    lock_file: Annotated[
        Path | None,
        typer.Option(help="Hold an exclusive flock on this file during each section."),
    ] = None,
) -> None:
    """Build a world of --items / --users through the platform's code, measure feature reads,
    retrieval, ranking, memory and HTTP serving, and write bench/results/scale_<items>.json
    and BENCHMARKS.md."""
    bench = FeedraySettings().bench
    overrides = {k: v for k, v in {"items": items, "users": users, "days": days}.items() if v}
    bench = bench.model_copy(update=overrides)
    command = " ".join(shlex.quote(a) for a in ["feedray", *sys.argv[1:]])
    _, json_path, md_path = run_suite(
        bench, http=http, lock_file=lock_file, command=command, log=typer.echo
    )
    typer.echo(f"wrote {json_path} and {md_path}")
