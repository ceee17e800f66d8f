"""``import_dataset`` through real Kafka, the catalogue consumer and the offline ingestion."""

import uuid

import pandas as pd
import pytest

from app.storage import read_catalogue
from data.importers.mapping import Mapping
from data.importers.readers import read_dataset
from data.importers.run import import_dataset
from data.ingest import read_events

pytestmark = pytest.mark.integration


def test_recbole_files_reach_the_catalogue_and_the_event_store(kafka_topics, ray_local, tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    rows = [
        (u, i, 1 + (u + i) % 5, 1_600_000_000 + 3600 * (7 * u + i))
        for u in range(6)
        for i in range(4)
    ]
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    )
    (folder / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        + "".join(f"{i}\tFilm {i}\tDrama Comedy\n" for i in range(4))
    )
    ns = f"t{uuid.uuid4().hex[:6]}:"
    settings = kafka_topics.model_copy(
        update={
            "catalogue": kafka_topics.catalogue.model_copy(
                update={"root": str(tmp_path / "cat"), "group_id": f"cat-{ns}"}
            ),
            "ingest": kafka_topics.ingest.model_copy(
                update={"root": str(tmp_path / "events"), "catalogue": str(tmp_path / "cat")}
            ),
        }
    )
    report = import_dataset(
        settings, read_dataset("recbole", folder), Mapping(namespace=ns), ingest=True
    )

    liked = sum(r >= 4 for _, _, r, _ in rows)
    assert report.publications == 4 and report.catalogued == 4
    assert report.events == len(rows) + liked and report.ingested_rows == report.events
    cat = read_catalogue(str(tmp_path / "cat")).to_pandas()
    assert sorted(cat["media_id"]) == [f"{ns}{i}" for i in range(4)]
    assert set(cat["category"]) == {"Drama"}
    store = read_events(str(tmp_path / "events")).to_pandas()
    assert (store["category"] == "Drama").all()  # enriched from the imported catalogue
    completed = store[store["event_type"] == "media_completed"]
    seconds = completed["timestamp"].map(pd.Timestamp.timestamp).astype("int64")
    got = sorted(zip(completed["user_id"], completed["media_id"], seconds, strict=True))
    assert got == sorted((f"{ns}{u}", f"{ns}{i}", t) for u, i, _, t in rows)
    assert (store["event_type"] == "media_liked").sum() == liked
