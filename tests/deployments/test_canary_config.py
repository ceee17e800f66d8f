"""The canary's config transforms on serve_config.yaml's shape, in both placements: only
user_config and autoscaling fields change (what Serve applies in place)."""

from __future__ import annotations

from deployments.canary import (
    is_local,
    stage_config,
    with_canary_stages,
    with_champion,
    with_share,
)
from deployments.deploy import deployment, load_config, with_stages

REFS = {"CanaryRetrieval": "feedray-two-tower@7", "CanaryRanking": "feedray-ranker@8"}


def _without(config: dict, names: set[str]) -> dict:
    """The application with the named deployments' user_config / autoscaling_config removed."""
    app = dict(config["applications"][0])
    app["deployments"] = [
        {k: v for k, v in d.items() if k not in names} for d in app["deployments"]
    ]
    return app


def test_start_changes_only_the_canary_stages_and_the_share():
    from ray.serve.schema import ServeDeploySchema

    base = load_config()
    running = with_canary_stages(base, REFS, running=True, max_replicas=2)
    running = with_share(running, 0.05, "exp-1", "2027-01-01T00:00:00+00:00")
    ServeDeploySchema.model_validate(running)
    assert _without(running, {"user_config", "autoscaling_config"}) == _without(
        base, {"user_config", "autoscaling_config"}
    )
    for name, ref in REFS.items():
        entry = deployment(running, name)
        assert entry["user_config"]["models"] == {"canary": ref}
        assert entry["autoscaling_config"]["min_replicas"] == 1
        assert entry["autoscaling_config"]["max_replicas"] == 2
    for name in ("Retrieval", "Ranking"):
        assert deployment(running, name) == deployment(base, name)
    ingress = deployment(running, "Ingress")["user_config"]
    assert ingress == {
        "canary_share": 0.05, "experiment": "exp-1",
        "canary_started_at": "2027-01-01T00:00:00+00:00",
    }  # fmt: skip
    assert deployment(base, "Ingress")["user_config"]["canary_share"] == 0.0  # not mutated


def test_stop_scales_the_canary_to_zero_and_promotion_moves_the_champion():
    running = with_canary_stages(load_config(), REFS, running=True, max_replicas=2)
    stopped = with_canary_stages(with_share(running, 0.0), {}, running=False)
    for name in REFS:
        scaling = deployment(stopped, name)["autoscaling_config"]
        assert scaling["min_replicas"] == scaling["initial_replicas"] == 0
    assert deployment(stopped, "Ingress")["user_config"]["canary_share"] == 0.0
    promoted = with_champion(stopped, {"Retrieval": "feedray-two-tower@7"})
    assert deployment(promoted, "Retrieval")["user_config"]["models"] == {
        "champion": "feedray-two-tower@7"
    }
    assert deployment(promoted, "Ranking") == deployment(stopped, "Ranking")


def test_local_stages_carry_the_canary_in_the_ingress_blocks():
    from ray.serve.schema import ServeDeploySchema

    local = with_stages(load_config(), "local")
    assert is_local(local)
    running = with_share(with_canary_stages(local, REFS, running=True), 0.1, "exp-2")
    ServeDeploySchema.model_validate(running)
    names = {d["name"] for d in running["applications"][0]["deployments"]}
    assert names == {"Ingress"}
    ingress = deployment(running, "Ingress")["user_config"]
    assert ingress["canary_retrieval"]["models"] == {"canary": REFS["CanaryRetrieval"]}
    assert ingress["canary_ranking"]["models"] == {"canary": REFS["CanaryRanking"]}
    assert ingress["canary_share"] == 0.1
    assert stage_config(running, "Retrieval")["models"] == {"champion": "alias:champion"}
    back = with_stages(running, "remote")
    assert deployment(back, "CanaryRanking")["user_config"]["models"] == {
        "canary": REFS["CanaryRanking"]
    }


def test_resolve_aliases_covers_the_canary_stages(monkeypatch):
    from app.config import FeedraySettings
    from deployments import deploy

    versions = {"alias:champion": "3"}

    def resolve_model_ref(ref, model, settings):
        if ref not in versions:
            raise LookupError(ref)
        return versions[ref]

    monkeypatch.setattr("app.serving.model_refs.resolve_model_ref", resolve_model_ref)
    resolved = deploy.resolve_aliases(load_config(), FeedraySettings())
    ms = FeedraySettings().models
    # No challenger alias: the canary's stages would serve the champion's version.
    assert deployment(resolved, "CanaryRanking")["user_config"]["models"] == {
        "canary": f"{ms.ranking_model_name}@3"
    }
    assert deployment(resolved, "Retrieval")["user_config"]["models"] == {
        "champion": f"{ms.retrieval_model_name}@3"
    }
