"""``train.pipeline`` end to end: real Kafka, Ray Data, Ray Train, MLflow (sqlite) and FAISS.

A small world's simulated days go to Kafka; the registry starts with an untrained champion of
both models (so every gate has a reference). One successful pipeline run (module fixture)
ingests them, trains, indexes and hands the new pair to the canary; a second run fails at its
ranking step and must leave every alias where the first left it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from app import registry
from app.retraining import NewVersions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_USERS, N_ITEMS, DAYS = 600, 1000, 3.0


@pytest.fixture(scope="module")
def world_settings(broker_stack, ray_local, tmp_path_factory):
    """Fresh topics holding ``DAYS`` simulated days ending now, the offline catalogue, a
    private state folder and MLflow store, and an untrained champion of each model."""
    from app.clock import clock_from_settings
    from app.config import MlflowSettings
    from app.models.config import (
        FeatureSettings,
        ModelSettings,
        RankerSettings,
        TrainingSettings,
        TwoTowerSettings,
        default_head_weights,
    )
    from app.models.ranker import Ranker
    from app.models.two_tower import TwoTower
    from app.stack.kafka import ensure_topics
    from app.storage import catalogue_root
    from data.simulate.sessions import simulate_chunks
    from data.simulate.sinks import KafkaSink
    from data.simulate.store import write_catalogue
    from data.simulate.world import WorldConfig
    from train.bootstrap import register_version, world_at

    tmp = tmp_path_factory.mktemp("pipeline")
    suffix = uuid.uuid4().hex[:10]
    topics = broker_stack.kafka.topics.model_copy(
        update={
            "engagement": f"user.engagement.events.{suffix}",
            "published": f"media.published.{suffix}",
            "dead_letter": f"user.engagement.events.dlq.{suffix}",
            "exposures": f"feed.exposures.{suffix}",
        }
    )
    settings = broker_stack.model_copy(
        update={
            "state_dir": tmp / "state",
            "kafka": broker_stack.kafka.model_copy(update={"topics": topics}),
            "mlflow": MlflowSettings(tracking_uri=f"sqlite:///{tmp}/mlflow.db"),
        }
    )
    ensure_topics(settings)
    world = world_at(
        WorldConfig(seed=5, n_users=N_USERS, n_items=N_ITEMS, n_creators=80),
        clock_from_settings(settings).now(),
        DAYS,
    )
    sink = KafkaSink(settings)
    for chunk in simulate_chunks(world, DAYS):
        sink.write(chunk, world)
    events = sink.close().events
    write_catalogue(world, catalogue_root(settings))

    ms = ModelSettings(
        features=FeatureSettings(
            user_buckets=1 << 12, item_buckets=1 << 13, creator_buckets=1 << 9
        ),
        two_tower=TwoTowerSettings(epochs=2, learning_rate=5e-3),
        ranker=RankerSettings(epochs=4, batch_size=128),
        training=TrainingSettings(num_workers=1, cpus_per_worker=1, eval_days=0.5),
    )
    uri = settings.mlflow.tracking_uri
    tower = TwoTower(
        ms.features, ms.two_tower.model_copy(update={"output_dim": settings.serving.embedding_dim})
    )
    ranker = Ranker(ms.features, ms.ranker, default_head_weights(settings.events.signal_weights))
    for name, model in ((ms.retrieval_model_name, tower), (ms.ranking_model_name, ranker)):
        assert register_version(uri, name, model, {"untrained": True}, {}) == 1
    return settings, ms, uri, tmp, events


def _aliases(uri: str, ms) -> dict[str, dict[int, list[str]]]:
    return {
        name: {v["version"]: v["aliases"] for v in registry.versions(uri, name)}
        for name in (ms.retrieval_model_name, ms.ranking_model_name)
    }


@pytest.fixture(scope="module")
def first_run(world_settings):
    from train.pipeline import run_pipeline

    settings, ms, _, tmp, _ = world_settings
    handed: list[NewVersions] = []
    record = run_pipeline(
        settings,
        ms,
        release=lambda versions: handed.append(versions) or {"canary": "started"},
        storage_path=str(tmp / "ray"),
    )
    return record, handed


def test_a_run_trains_indexes_and_hands_the_new_pair_to_the_canary(world_settings, first_run):
    from mlflow import MlflowClient

    from train.pipeline import runs_dir

    settings, ms, uri, _, events = world_settings
    record, handed = first_run
    print(json.dumps(record.to_json(), indent=1))
    assert record.status == "succeeded", record.reason
    assert [s.status for s in record.steps] == ["ok"] * 8
    assert record.step("ingest").detail["rows"] == events  # the whole simulated backlog
    assert record.step("training_set").detail["folder"].endswith(f"pipeline-{record.run_id}")

    # new versions of both models, challenger only; the champion where it was
    assert _aliases(uri, ms) == {
        ms.retrieval_model_name: {1: ["champion"], 2: ["challenger"]},
        ms.ranking_model_name: {1: ["champion"], 2: ["challenger"]},
    }
    assert handed == [
        NewVersions(ms.retrieval_model_name, 2, ms.ranking_model_name, 2, record.run_id)
    ]
    assert record.step("release").detail == {"canary": "started"}

    # the FAISS index is logged beside the two-tower version it was built with
    index = registry.load_index(uri, ms.retrieval_model_name, "challenger")
    assert len(index) == N_ITEMS
    tower_v2 = registry.versions(uri, ms.retrieval_model_name)[1]["tags"]
    assert tower_v2["index_kind"] == index.params.kind
    for name in (ms.retrieval_model_name, ms.ranking_model_name):
        tags = registry.versions(uri, name)[1]["tags"]
        assert tags["pipeline_status"] == "succeeded" and tags["pipeline_run"] == record.run_id
        assert tags["gate_passed"] == "True"

    # the run record: on disk and as an MLflow run with per-step tags
    on_disk = json.loads((runs_dir(settings) / f"{record.run_id}.json").read_text())
    assert on_disk["status"] == "succeeded" and on_disk["versions"] == {
        "train_retrieval": 2,
        "train_ranking": 2,
    }
    run = MlflowClient(uri).get_run(on_disk["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "succeeded"
    assert {run.data.tags[f"step.{s.name}.status"] for s in record.steps} == {"ok"}
    assert float(run.data.tags["step.train_retrieval.duration_s"]) > 0


def test_a_failed_training_step_leaves_the_aliases_and_records_why(world_settings, first_run):
    from mlflow import MlflowClient

    from train.pipeline import run_pipeline, runs_dir

    settings, ms, uri, tmp, _ = world_settings
    before = _aliases(uri, ms)
    handed: list[NewVersions] = []

    def fault(step: str) -> None:
        if step == "train_ranking":
            raise RuntimeError("injected: ranking workers lost")

    record = run_pipeline(
        settings,
        ms,
        release=handed.append,
        storage_path=str(tmp / "ray"),
        fault=fault,
    )
    assert record.status == "failed" and record.failed_step == "train_ranking"
    assert record.reason == "RuntimeError: injected: ranking workers lost"
    assert [s.status for s in record.steps] == ["ok"] * 3 + ["failed"] + ["skipped"] * 4
    assert record.step("ingest").detail["rows"] == 0  # nothing new since the first run
    assert handed == []

    # the two-tower trained before the failure is registered (v3) but never aliased
    after = _aliases(uri, ms)
    assert after[ms.ranking_model_name] == before[ms.ranking_model_name]
    assert after[ms.retrieval_model_name] == before[ms.retrieval_model_name] | {3: []}
    v3 = registry.versions(uri, ms.retrieval_model_name)[2]["tags"]
    assert v3["pipeline_status"] == "failed:train_ranking"

    on_disk = json.loads((runs_dir(settings) / f"{record.run_id}.json").read_text())
    assert (on_disk["status"], on_disk["failed_step"]) == ("failed", "train_ranking")
    assert on_disk["reason"] == record.reason
    run = MlflowClient(uri).get_run(on_disk["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["failed_step"] == "train_ranking"
    assert run.data.tags["failure_reason"] == record.reason
    assert run.data.tags["step.index.status"] == "skipped"
