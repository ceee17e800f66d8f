"""``feedray import FORMAT PATH``: a dataset -> Kafka -> catalogue / collector / offline store.

``import_dataset`` maps the dataset (``data.importers.mapping``) and produces through the
simulator's ``KafkaSink``: the items to ``media.published``, then (by default) runs the
catalogue consumer until idle so every item is in Redis and the offline catalogue before
its first event, then the events to the engagement topic. With ``ingest`` it then runs
the offline ingestion until caught up (events -> the Parquet store). The collector (online
features) reads the same topic as always: ``feedray collect --until-idle``.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from pydantic import BaseModel

from app.config import FeedraySettings
from data.importers import mapping as mp
from data.importers.readers import FORMATS, Columns, Dataset, DatasetError, read_dataset


class ImportReport(BaseModel):
    dataset: str
    interactions: int
    items: int
    publications: int
    events: int
    catalogued: int | None = None
    ingested_rows: int | None = None
    seconds: float


def import_dataset(
    settings: FeedraySettings,
    dataset: Dataset,
    m: mp.Mapping = mp.Mapping(),
    *,
    catalogue: bool = True,
    ingest: bool = False,
    ingest_root: str | None = None,
) -> ImportReport:
    """Produce ``dataset`` into the platform's topics (see the module docstring)."""
    from data.simulate.sinks import KafkaSink

    t0 = time.perf_counter()
    pubs = mp.publications(dataset, m)
    evs = mp.events(dataset, m)
    sink = KafkaSink(settings)
    sink.send(publications=mp.messages(pubs, "media_id"))
    sink.flush()
    report = ImportReport(
        dataset=dataset.name,
        interactions=len(dataset.interactions),
        items=len(dataset.items),
        publications=len(pubs),
        events=len(evs),
        seconds=0.0,
    )
    if catalogue:
        from data.catalogue import run_catalogue

        report.catalogued = run_catalogue(settings, until_idle=True).published
    sink.send(events=mp.messages(evs, "user_id"))
    sink.close()
    if ingest:
        from app.ray_runtime import connect_ray
        from data.ingest import ingest_until_caught_up

        connect_ray(settings)
        reports = ingest_until_caught_up(settings, ingest_root)
        report.ingested_rows = sum(r.rows for r in reports)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def import_command(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"One of {', '.join(FORMATS)}.")],
    path: Annotated[str, typer.Argument(help="Dataset file or folder (read in place).")],
    namespace: Annotated[str, typer.Option(help="Prefix of every user / item id.")] = "",
    valid: Annotated[str | None, typer.Option(help="table: the given validation file.")] = None,
    test: Annotated[str | None, typer.Option(help="table: the given test file.")] = None,
    user_col: Annotated[str, typer.Option(help="table: user column.")] = "user_id",
    item_col: Annotated[str, typer.Option(help="table: item column.")] = "item_id",
    strength_col: Annotated[str | None, typer.Option(help="table: strength column.")] = None,
    time_col: Annotated[str | None, typer.Option(help="table: timestamp column (s).")] = None,
    strength: Annotated[
        str, typer.Option(help="table: implicit | rating | count (how the strength maps).")
    ] = "implicit",
    like_at: Annotated[float, typer.Option(help="rating >= this adds media_liked.")] = 4.0,
    replay_at: Annotated[float, typer.Option(help="count >= this adds media_replay.")] = 2.0,
    catalogue: Annotated[
        bool, typer.Option(help="Run the catalogue consumer before producing events.")
    ] = True,
    ingest: Annotated[bool, typer.Option(help="Then ingest the events into the store.")] = False,
) -> None:
    """Import a public interaction dataset through Kafka (mapping: data/importers/mapping.py)."""
    from app.config import get_settings

    options = {}
    if fmt == "table":
        cols = Columns(user_col, item_col, strength_col, time_col)
        options = {"columns": cols, "valid": valid, "test": test, "strength_kind": strength}
    try:
        dataset = read_dataset(fmt, path, **options)
        m = mp.Mapping(namespace=namespace, like_at=like_at, replay_at=replay_at)
        report = import_dataset(get_settings(), dataset, m, catalogue=catalogue, ingest=ingest)
    except DatasetError as error:
        typer.echo(f"feedray import: {error}", err=True)
        raise typer.Exit(code=1) from None
    sys.stdout.write(report.model_dump_json() + "\n")
