"""Stand up a servable simulated world in one process: stores filled, models registered.

    python -m train.bootstrap --users 20000 --items 100000 --days 3

For the serving tests and the serving benchmark, which need everything a feed request
touches without the minutes Ray Train and the streaming jobs take to start on 2 cores:

1. the world's catalogue into Redis and the Parquet catalogue (``data.catalogue``);
2. ``days`` of simulated events ending now (``settings.clock``): into the online store through
   ``EventBatch`` / ``OnlineStore.apply`` (what the collector does per Kafka batch) and
   into a Parquet event store;
3. the trending lists (``data.trending.refresh_trending``);
4. a point-in-time training set from those events (``data.training_sets``), a two-tower and a
   ranker trained on it **in this process** (the models' own ``train_step``; the
   production jobs are ``train.retrieval`` / ``train.ranking`` on Ray Train), each
   logged and registered in MLflow with the ``champion`` alias;
5. the FAISS index of the two-tower version (``app.index.build_index``), logged as
   ``index/`` in that version's run, as ``train.index`` does.

Everything goes through the real Redis and MLflow named by ``settings``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.clock import Clock, clock_from_settings
from app.config import FeedraySettings
from app.models.optim import SplitAdam


@dataclass
class Bootstrapped:
    world: Any
    events: int
    now_s: float
    versions: dict[str, int]  # model name -> registered version
    seconds: dict[str, float]
    models: dict[str, Any]  # "two_tower", "ranker", "index": what was registered
    # Per model: rows per epoch, epochs, seconds of its training loop, samples/s.
    training: dict[str, dict[str, float]] = field(default_factory=dict)


def world_at(world_config, now: datetime, days: float):
    """The world of ``world_config`` whose simulated ``days`` end at ``now``."""
    from data.simulate.world import World

    return World.generate(
        world_config.model_copy(update={"start": now - timedelta(days=days), "new_item_days": days})
    )


def apply_events(store, world, days: float, sink=None, batch_size: int = 5_000) -> int:
    """Simulate ``days`` of events and apply them to the online store (and ``sink``)."""
    from app.schemas import parse_engagement_event
    from data.collector.batch import EventBatch
    from data.simulate.sessions import simulate_chunks
    from data.simulate.wire import event_payloads

    written = 0
    for chunk in simulate_chunks(world, days):
        if sink is not None:
            sink.write(chunk, world)
        payloads = event_payloads(chunk.events).tolist()
        for lo in range(0, len(payloads), batch_size):
            events = [parse_engagement_event(p) for p in payloads[lo : lo + batch_size]]
            meta = store.item_metadata(list({e.media_id for e in events}))
            batch = EventBatch(store)
            for k, event in enumerate(events):
                batch.cover("bootstrap", 0, written + k)
                if event.media_id in meta:
                    batch.add(event, meta[event.media_id])
            store.apply(batch, "bootstrap")
            written += len(events)
    if sink is not None:
        sink.close()
    return written


def _batches(frame, columns: list[str], batch_size: int, rng: np.random.Generator, drop_last: bool):
    from app.models.features import frame_columns

    order = rng.permutation(len(frame))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for lo in range(0, stop, batch_size):
        part = frame.iloc[order[lo : lo + batch_size]]
        if len(part) >= (batch_size if drop_last else 1):
            yield frame_columns(part, columns)


def _throughput(rows: int, epochs: int, seconds: float) -> dict[str, float]:
    return {"rows": rows, "epochs": epochs, "s": seconds, "samples_per_s": rows * epochs / seconds}


def train_in_process(
    model,
    step,
    frame,
    columns: list[str],
    epochs: int,
    batch_size: int,
    lr: float,
    drop_last: bool,
    seed: int = 0,
) -> list[float]:
    """Plain epochs of ``step`` over shuffled batches of ``frame``; mean loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = SplitAdam(model, lr=lr)
    losses = []
    for _ in range(epochs):
        epoch = [
            step(model, batch, optimizer)
            for batch in _batches(frame, columns, batch_size, rng, drop_last)
        ]
        losses.append(float(np.mean(epoch)) if epoch else float("nan"))
    model.eval()
    return losses


def register_version(
    uri: str,
    name: str,
    model,
    params: dict,
    metrics: dict,
    index=None,
    alias: str | None = "champion",
) -> int:
    """Log ``model`` (and its ``index``) in a new MLflow run and register it as a version of
    ``name``."""
    import mlflow

    from app import registry
    from train.mlflow_run import save_model_dir

    registry.configure(uri)
    with mlflow.start_run(
        experiment_id=registry.experiment_id(uri, "bootstrap"), run_name=f"bootstrap-{name}"
    ) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            save_model_dir(model, Path(tmp) / "model")
            mlflow.log_artifacts(str(Path(tmp) / "model"), "model")
        run_id = run.info.run_id
    if index is not None:
        registry.log_index(uri, run_id, index)
    mv = registry.register_model(uri, name, run_id, tags={"source": "train.bootstrap"})
    if alias:
        registry.set_alias(uri, name, alias, mv.version)
    return int(mv.version)


def bootstrap(
    settings: FeedraySettings,
    world_config,
    days: float = 3.0,
    epochs: int = 2,
    log=print,
    clock: Clock | None = None,
) -> Bootstrapped:
    """Fill Redis, the offline store and the registry for ``world_config`` (module docstring).

    The world's events end at ``clock.now()`` (default: the clock ``settings.clock`` names).
    """
    from app import registry
    from app.features.online_store import OnlineStore
    from app.index import build_index
    from app.models.config import default_head_weights
    from app.models.ranker import Ranker
    from app.models.ranker import train_step as ranker_step
    from app.models.two_tower import TwoTower
    from app.models.two_tower import train_step as tower_step
    from app.ray_runtime import connect_ray
    from app.serving.catalogue import CatalogueColumns
    from app.serving.live_index import embed_items
    from app.storage import catalogue_root, read_catalogue
    from data.catalogue import seed_catalogue_from_world
    from data.simulate.sinks import ParquetSink
    from data.training_sets import build_training_set, load_training_set
    from data.trending import refresh_trending
    from train.common import RANKING_COLUMNS, RETRIEVAL_COLUMNS
    from train.index import served_queries
    from train.ranking import add_retrieval_score

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    now = (clock or clock_from_settings(settings)).now()
    world = world_at(world_config, now, days)
    store = OnlineStore.from_settings(settings, socket_timeout=30.0)
    seed_catalogue_from_world(settings, world, store=store)
    seconds["catalogue"] = time.perf_counter() - t

    t = time.perf_counter()
    offline = Path(settings.state_dir).expanduser().resolve() / "bootstrap"
    events = apply_events(store, world, days, ParquetSink(offline))
    refresh_trending(settings, store=store, now=now.timestamp())
    seconds["events"] = time.perf_counter() - t
    log(f"bootstrap: {world.n_items} items, {events} events applied in {seconds['events']:.1f}s")

    t = time.perf_counter()
    model_settings = settings.models
    connect_ray(settings)
    folder = build_training_set(
        offline / "events",
        catalogue_root(settings),
        offline / "training_set",
        model_settings.features,
        signal_weights=settings.events.signal_weights,
        eval_days=0.0 if days < 2 else 0.5,
    )
    ts = load_training_set(folder)
    seconds["training_set"] = time.perf_counter() - t

    t = time.perf_counter()
    tower = TwoTower(model_settings.features, model_settings.two_tower)
    positives = ts.positives()
    training: dict[str, dict[str, float]] = {}
    t_model = time.perf_counter()
    tower_loss = train_in_process(
        tower,
        tower_step,
        positives,
        RETRIEVAL_COLUMNS,
        epochs,
        min(model_settings.two_tower.batch_size, max(len(positives) // 4, 2)),
        model_settings.two_tower.learning_rate,
        drop_last=True,
    )
    training["two_tower"] = _throughput(len(positives), epochs, time.perf_counter() - t_model)
    train = add_retrieval_score(ts.train, tower)
    ranker = Ranker(
        model_settings.features,
        model_settings.ranker,
        model_settings.ranker.head_weights or default_head_weights(settings.events.signal_weights),
    )
    t_model = time.perf_counter()
    ranker_loss = train_in_process(
        ranker,
        ranker_step,
        train,
        RANKING_COLUMNS,
        epochs,
        model_settings.ranker.batch_size,
        model_settings.ranker.learning_rate,
        drop_last=False,
    )
    training["ranker"] = _throughput(len(train), epochs, time.perf_counter() - t_model)
    seconds["training"] = time.perf_counter() - t

    t = time.perf_counter()
    catalogue = CatalogueColumns.from_table(read_catalogue(catalogue_root(settings)))
    n_queries = min(model_settings.index.recall_queries, len(ts.users))
    users = ts.users.sample(n_queries, random_state=model_settings.training.seed)
    index = build_index(
        embed_items(tower, catalogue, now_s=now.timestamp()),
        list(catalogue.media_ids),
        model_settings.index,
        queries=served_queries(tower, users),
    )
    seconds["index"] = time.perf_counter() - t

    uri = registry.tracking_uri(settings)
    common = {
        "days": days,
        "epochs": epochs,
        "users": world.n_users,
        "items": world.n_items,
        "train_rows": ts.meta["train_rows"],
        "features": json.dumps(model_settings.features.model_dump(mode="json")),
    }
    versions = {
        model_settings.retrieval_model_name: register_version(
            uri,
            model_settings.retrieval_model_name,
            tower,
            common,
            {"train_loss": tower_loss[-1], "index_recall_at_k": index.params.recall_at_k or 0.0},
            index,
        ),
        model_settings.ranking_model_name: register_version(
            uri, model_settings.ranking_model_name, ranker, common, {"train_loss": ranker_loss[-1]}
        ),
    }
    log(
        f"bootstrap: registered {versions}; losses two-tower {tower_loss}, ranker {ranker_loss}; "
        f"index {index.params.kind} recall@{index.params.recall_k}={index.params.recall_at_k:.3f}"
    )
    return Bootstrapped(
        world,
        events,
        now.timestamp(),
        versions,
        seconds,
        {"two_tower": tower, "ranker": ranker, "index": index},
        training,
    )


def main() -> None:
    import argparse

    from app.config import get_settings
    from data.simulate.world import WorldConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--creators", type=int, default=5_000)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result = bootstrap(
        get_settings(),
        WorldConfig(
            seed=args.seed, n_users=args.users, n_items=args.items, n_creators=args.creators
        ),
        args.days,
        args.epochs,
    )
    print(
        json.dumps(
            {
                "events": result.events,
                "versions": result.versions,
                "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
