"""Ray Train plumbing shared by the retrieval and ranking jobs.

``train_loop_per_worker`` runs in every Ray Train worker (gloo on CPU, NCCL + GPU when
``use_gpu``): it builds the model from its config, resumes from ``ray.train.get_checkpoint()``
when the run has one (same run name and storage path), streams its shard of the Ray
Dataset with ``iter_torch_batches``, and reports metrics and a checkpoint (model +
optimizer + epoch) after every epoch. ``fit`` is the driver side.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from app.models import ranker as ranker_mod
from app.models import two_tower as tt_mod
from app.models.features import to_tensors
from app.models.optim import SplitAdam

RETRIEVAL_COLUMNS = [
    "u_hash",
    "u_hist",
    "u_cats",
    "u_lang",
    "u_pref",
    "u_dense",
    "i_hash",
    "i_cat",
    "i_creator",
    "i_type",
    "i_lang",
    "i_dur",
    "i_dense",
    "log_q",
    "weight",
]
RANKING_COLUMNS = [
    "u_hash",
    "u_hist",
    "u_cats",
    "u_lang",
    "u_pref",
    "u_dense",
    "i_hash",
    "i_cat",
    "i_creator",
    "i_type",
    "i_lang",
    "i_dur",
    "i_dense",
    "type_match",
    "retrieval_score",
    "label_completed",
    "label_strong",
    "label_negative",
]


def build_model(config: dict) -> torch.nn.Module:
    if config["kind"] == "two_tower":
        return tt_mod.TwoTower.from_config(config)
    if config["kind"] == "ranker":
        return ranker_mod.Ranker.from_config(config)
    raise ValueError(f"unknown model kind {config['kind']!r}")


def _step_fn(kind: str):
    return tt_mod.train_step if kind == "two_tower" else ranker_mod.train_step


@torch.no_grad()
def _eval_loss(model: torch.nn.Module, kind: str, batches) -> float:
    core = model.module if hasattr(model, "module") else model
    core.eval()
    total, n = 0.0, 0
    for b in batches:
        if kind == "two_tower":
            u, v = core(b)
            s = core.settings
            loss = tt_mod.in_batch_loss(
                u, v, b["i_hash"], s.temperature, b["log_q"] if s.logq_correction else None
            )
        else:
            loss = ranker_mod.multi_head_loss(core(b), b)
        total += float(loss) * b["u_hash"].shape[0]
        n += b["u_hash"].shape[0]
    return total / max(n, 1)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker: resume, train ``epochs`` epochs, report + checkpoint each epoch."""
    import ray.train
    import ray.train.torch

    torch.manual_seed(config.get("seed", 0))
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    model = build_model(config["model"])
    core = model
    optimizer = SplitAdam(model, lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=False)
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        if rank == 0:
            print(f"[{config['kind']}] resuming from epoch {start_epoch}", flush=True)
    model = ray.train.torch.prepare_model(model) if ctx.get_world_size() > 1 else model.to(device)
    step = _step_fn(config["model"]["kind"])
    shard = ray.train.get_dataset_shard("train")
    eval_shard = ray.train.get_dataset_shard("eval") if config.get("has_eval") else None
    drop_last = config["model"]["kind"] == "two_tower"
    for epoch in range(start_epoch, config["epochs"]):
        t0, losses, samples = time.perf_counter(), [], 0
        for raw in shard.iter_torch_batches(
            batch_size=config["batch_size"],
            drop_last=drop_last,
            local_shuffle_buffer_size=config.get("shuffle_buffer") or None,
            device=str(device),
        ):
            batch = to_tensors(raw, device)
            losses.append(step(model, batch, optimizer))
            samples += batch["u_hash"].shape[0]
        seconds = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": sum(losses) / max(len(losses), 1),
            "samples": samples,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "rank": rank,
        }
        if eval_shard is not None:
            batches = (
                to_tensors(b, device)
                for b in eval_shard.iter_torch_batches(
                    batch_size=config["batch_size"], drop_last=drop_last, device=str(device)
                )
            )
            metrics["val_loss"] = _eval_loss(model, config["model"]["kind"], batches)
        if rank == 0:
            print(
                f"[{config['kind']}] epoch {epoch + 1}/{config['epochs']} "
                + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
                flush=True,
            )
            with tempfile.TemporaryDirectory() as tmp:
                unwrapped = model.module if hasattr(model, "module") else model
                torch.save(
                    {
                        "model": unwrapped.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch,
                    },
                    Path(tmp) / "state.pt",
                )
                (Path(tmp) / "model_config.json").write_text(json.dumps(config["model"]))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)


def resolve_use_gpu(use_gpu: bool | None) -> bool:
    return torch.cuda.is_available() if use_gpu is None else bool(use_gpu)


def fit(
    *,
    kind: str,
    model_config: dict,
    train_ds,
    eval_ds=None,
    epochs: int,
    batch_size: int,
    lr: float,
    name: str,
    storage_path: str | Path,
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    use_gpu: bool | None = None,
    seed: int = 0,
    extra: dict | None = None,
):
    """Run a ``TorchTrainer``; returns (trained model on CPU, ray Result, per-epoch metrics).

    Re-running with the same ``name`` and ``storage_path`` resumes from the run's latest
    checkpoint (Ray Train V2 restores the run's checkpoint manager from storage).
    """
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = resolve_use_gpu(use_gpu)
    datasets = {"train": train_ds} | ({"eval": eval_ds} if eval_ds is not None else {})
    loop_config = {
        "kind": kind,
        "model": model_config,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "has_eval": eval_ds is not None,
        "threads": max(1, int(cpus_per_worker)),
        "shuffle_buffer": 4 * batch_size,
        **(extra or {}),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": cpus_per_worker} | ({"GPU": 1} if gpu else {}),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    model = build_model(model_config)
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return model, result, state["epoch"]


def start_job(
    settings,
    model_settings,
    tracking_uri: str | None,
    *,
    events: str | None,
    catalogue: str | None,
    training_set: str | None,
    name: str,
    exclude_items: set[str] | None = None,
):
    """What every training job starts with: (settings, model settings matched to the training
    set, tracking URI, training set, its folder), with Ray joined."""
    from app import registry
    from app.config import get_settings
    from app.models.config import resolve_model_settings
    from app.ray_runtime import connect_ray

    settings = settings or get_settings()
    model_settings = model_settings or resolve_model_settings(settings)
    uri = tracking_uri or registry.tracking_uri(settings)
    connect_ray(settings)
    ts, folder = prepare_training_set(
        settings,
        model_settings,
        events=events,
        catalogue=catalogue,
        training_set=training_set,
        name=name,
        exclude_items=exclude_items,
    )
    return settings, match_features(model_settings, ts), uri, ts, folder


def fit_options(settings, model_settings, storage_path: str | None = None) -> dict[str, Any]:
    """The ``fit`` keyword arguments every job takes from ``model_settings.training``
    (resources, storage, seed)."""
    t = model_settings.training
    return {
        "storage_path": default_storage(settings, storage_path or t.storage_path),
        "num_workers": t.num_workers,
        "cpus_per_worker": t.cpus_per_worker,
        "use_gpu": t.use_gpu,
        "seed": t.seed,
    }


def default_storage(settings, override: str | None = None) -> Path:
    return (
        Path(override)
        if override
        else Path(settings.state_dir).expanduser().resolve() / "ray_results"
    )


def prepare_training_set(
    settings,
    model_settings,
    *,
    events: str | None,
    catalogue: str | None,
    training_set: str | None,
    name: str,
    exclude_items: set[str] | None = None,
):
    """Load a saved training set, or build one from the offline store and save it.

    Returns (TrainingSet, folder). Defaults: events ``<state_dir>/offline/events``,
    catalogue ``<state_dir>/offline/catalogue``, output ``<state_dir>/training_sets/<name>``.
    """
    from data.training_sets import build_training_set, load_training_set

    if training_set:
        return load_training_set(training_set), Path(training_set)
    state = Path(settings.state_dir).expanduser().resolve()
    events = events or str(state / "offline" / "events")
    catalogue = catalogue or str(state / "offline" / "catalogue")
    print(f"building training set from {events} + {catalogue}", flush=True)
    t0 = time.perf_counter()
    out = Path(model_settings.training.training_sets or state / "training_sets") / name
    build_training_set(
        events,
        catalogue,
        out,
        model_settings.features,
        signal_weights=settings.events.signal_weights,
        eval_days=model_settings.training.eval_days,
        exclude_items=exclude_items,
    )
    ts = load_training_set(out)
    print(
        f"training set: {ts.meta['train_rows']} train / {ts.meta['eval_rows']} eval rows "
        f"in {time.perf_counter() - t0:.1f}s -> {out}",
        flush=True,
    )
    return ts, out


def match_features(model_settings, ts):
    """``model_settings`` with the feature settings the training set was built with (``meta``).

    Hashed id columns are only valid for the bucket sizes they were built with, so a saved
    set built under other settings must size the model's tables, not the current defaults."""
    from app.models.config import FeatureSettings

    built = ts.meta.get("features")
    if not built or FeatureSettings(**built) == model_settings.features:
        return model_settings
    print(f"using the training set's feature settings {built}", flush=True)
    return model_settings.model_copy(update={"features": FeatureSettings(**built)})


def ray_dataset(frame, columns: list[str], folder: Path, shuffle_seed: int | None = None):
    """Write ``frame[columns]`` as Parquet under ``folder`` and read it back with Ray Data.

    Training sets are ordered by time; ``shuffle_seed`` writes the rows in a random order
    once, so batches mix days and users (the per-epoch local shuffle buffer alone only
    mixes neighbouring rows)."""
    import pyarrow.parquet as pq
    import ray.data

    from data.training_sets import to_arrow

    folder.mkdir(parents=True, exist_ok=True)
    frame = frame[columns]
    if shuffle_seed is not None:
        frame = frame.sample(frac=1.0, random_state=shuffle_seed)
    table = to_arrow(frame.reset_index(drop=True))
    pq.write_table(table, folder / "part-0.parquet")
    if table.nbytes <= IN_DRIVER_BYTES:
        # small sets: the same table straight into the object store; read_parquet's tasks
        # cost a worker start-up each (tens of seconds on a loaded 2-core machine)
        return ray.data.from_arrow(table)
    return ray.data.read_parquet(str(folder)).materialize()


IN_DRIVER_BYTES = 256 << 20  # training tables up to this size skip the Parquet read tasks
