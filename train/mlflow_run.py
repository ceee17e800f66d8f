"""The MLflow side of a training job: the model folder, the champion, one run per job.

``log_and_register`` logs params, metrics and artifacts in one run, registers a version and
sets ``challenger`` (``champion`` too when there is none) when the gate passes
(``assign_aliases``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_model_dir(model: torch.nn.Module, out: str | Path, extra: dict | None = None) -> Path:
    """``model_config.json`` + ``state_dict.pt`` (+ ``extra.json``): the registered artifact."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_config.json").write_text(json.dumps(model.config(), indent=2))
    torch.save(model.state_dict(), out / "state_dict.pt")
    if extra:
        (out / "extra.json").write_text(json.dumps(extra, indent=2, default=str))
    return out


def load_champion(uri: str, name: str) -> torch.nn.Module | None:
    """The version behind ``champion`` (the gate's reference), or None before the first one."""
    from app import registry

    try:
        return registry.load_version(uri, name, registry.CHAMPION)[0]
    except LookupError:
        return None


def flat_params(prefix: str, model: Any) -> dict[str, Any]:
    return {
        f"{prefix}.{k}": (json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
        for k, v in model.model_dump(mode="json").items()
    }


def flat_metrics(report: dict[str, dict[str, float]]) -> dict[str, float]:
    return {
        f"{who}.{k}".replace("@", "_at_"): float(v)
        for who, m in report.items()
        for k, v in m.items()
        if v == v
    }  # drop NaN


def log_and_register(
    *,
    uri: str,
    experiment: str,
    model_name: str,
    model: torch.nn.Module,
    params: dict,
    report: dict,
    decision,
    epochs_trained: int,
    training_meta: dict,
    gate_settings,
    run_name: str,
    set_aliases: bool = True,
) -> dict[str, Any]:
    """One MLflow run: params, metrics, artifacts (model folder, report); register a version;
    set ``challenger`` when the gate passes (``champion`` too when there is none yet), unless
    ``set_aliases`` is False (the retraining pipeline sets them once every step succeeded)."""
    import mlflow

    from app import registry

    exp = registry.experiment_id(uri, experiment)
    registry.configure(uri)
    with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics(flat_metrics(report))
        mlflow.log_metric("epochs_trained", epochs_trained)
        mlflow.log_dict(report, "evaluation/report.json")
        mlflow.log_dict(decision.model_dump(), "evaluation/gate.json")
        mlflow.log_dict(training_meta, "training_set/meta.json")
        with tempfile.TemporaryDirectory() as tmp:
            save_model_dir(model, Path(tmp) / "model")
            mlflow.log_artifacts(str(Path(tmp) / "model"), "model")
        run_id = run.info.run_id
    mv = registry.register_model(
        uri,
        model_name,
        run_id,
        tags={
            "gate_passed": str(decision.passed),
            "gate_metric": decision.metric,
            "gate_value": f"{decision.value:.6f}",
        },
    )
    aliases = (
        assign_aliases(uri, model_name, int(mv.version), decision.passed, gate_settings)
        if set_aliases
        else []
    )
    print(
        f"registered {model_name} v{mv.version} (run {run_id}); aliases: {aliases or 'none'}; "
        f"gate: {decision.reason}",
        flush=True,
    )
    return {"run_id": run_id, "version": int(mv.version), "aliases": aliases}


def assign_aliases(
    uri: str, model_name: str, version: int, passed: bool, gate_settings
) -> list[str]:
    """``challenger`` on ``version`` when its gate ``passed`` (``champion`` too when the model
    has none yet and ``gate_settings.bootstrap_champion``); the aliases set."""
    from app import registry

    aliases: list[str] = []
    if not passed:
        return aliases
    has_champion = registry.get_version(uri, model_name, registry.CHAMPION) is not None
    registry.set_alias(uri, model_name, registry.CHALLENGER, version)
    aliases.append(registry.CHALLENGER)
    if not has_champion and gate_settings.bootstrap_champion:
        registry.set_alias(uri, model_name, registry.CHAMPION, version)
        aliases.append(registry.CHAMPION)
    return aliases
