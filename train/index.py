"""Index job: embed the catalogue with a model version's content tower, build FAISS, log it.

    python -m train.index --alias challenger [--training-set PATH | --events P --catalogue P]
    ray job submit --working-dir . -- python -m train.index --version 3

The catalogue's item features are embedded with Ray Data ``map_batches`` (the content
tower of exactly the version that will serve), the index kind follows the catalogue size
(``app.index``), recall@k against exact search is measured on a sample, and the index
folder is logged as ``index/`` in the same MLflow run as the model, with the version
tagged ``index_kind``, ``index_params`` and ``index_recall``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from app.index import FeedIndex, build_index
from app.models.config import ModelSettings, resolve_model_settings
from app.registry import load_index  # noqa: F401 - what serving loads next to the model (was defined here)


class _Embedder:
    """Ray Data callable: item feature batch -> unit vectors (the model loaded once per actor)."""

    def __init__(self, config: dict, state: dict) -> None:
        from app.models.two_tower import TwoTower

        self.model = TwoTower.from_config(config)
        self.model.load_state_dict(state)
        self.model.eval()

    def __call__(self, batch: dict) -> dict:
        from app.models.features import ITEM_COLUMNS, to_tensors
        from app.models.two_tower import embed

        cols = to_tensors({k: batch[k] for k in ITEM_COLUMNS})
        return {"media_id": batch["media_id"], "vector": embed(self.model.content, cols).numpy()}


def embed_catalogue(
    model, items: pd.DataFrame, batch_size: int = 8192
) -> tuple[np.ndarray, list[str]]:
    """Content-tower vectors of every item with Ray Data ``map_batches``: ([n, D], media ids)."""
    import ray.data

    from data.training_sets import to_arrow

    table = to_arrow(
        items[["media_id", "i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur", "i_dense"]]
    )
    ds = ray.data.from_arrow(table).map_batches(
        _Embedder,
        fn_constructor_args=(model.config(), model.state_dict()),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=1,
        num_cpus=1,
    )
    out = ds.to_pandas()
    return np.stack(out["vector"].to_numpy()).astype(np.float32), out["media_id"].tolist()


def served_queries(model, users: pd.DataFrame) -> np.ndarray:
    """User-tower embeddings [len(users), D] of training-set user rows: the index's queries."""
    from app.models.features import USER_COLUMNS, frame_columns
    from app.models.two_tower import embed

    if len(users) == 0:
        return np.empty((0, model.settings.output_dim), np.float32)
    return embed(model.user, frame_columns(users, USER_COLUMNS)).numpy()


def run_index(
    settings=None,
    model_settings: ModelSettings | None = None,
    *,
    alias: str = "challenger",
    items: pd.DataFrame | None = None,
    training_set: str | None = None,
    tracking_uri: str | None = None,
    published_only: bool = True,
) -> tuple[FeedIndex, dict]:
    from app import registry
    from app.config import get_settings
    from app.ray_runtime import connect_ray
    from data.training_sets import load_frame

    settings = settings or get_settings()
    model_settings = model_settings or resolve_model_settings(settings)
    uri = tracking_uri or registry.tracking_uri(settings)
    connect_ray(settings)
    model, mv = registry.load_version(uri, model_settings.retrieval_model_name, alias)
    folder = training_set or registry.configure(uri).get_run(mv.run_id).data.params.get(
        "training_set"
    )
    if items is None:
        if not folder:
            raise ValueError(
                f"{model_settings.retrieval_model_name} v{mv.version} names no training set"
            )
        items = load_frame(Path(folder) / "items")
    users = Path(folder) / "users" if folder else None
    queries = None
    if users is not None and users.exists():
        sample = load_frame(users, sample=model_settings.index.recall_queries)
        queries = served_queries(model, sample)
    print(
        f"embedding {len(items)} items with {model_settings.retrieval_model_name} v{mv.version}",
        flush=True,
    )
    vectors, ids = embed_catalogue(model, items)
    index = build_index(vectors, ids, model_settings.index, queries=queries)
    p = index.params
    print(
        f"index {p.kind} n={p.n} recall@{p.recall_k}={p.recall_at_k:.4f} nprobe={p.nprobe} "
        f"build={p.build_s:.1f}s query={p.query_ms_p50:.2f}ms",
        flush=True,
    )
    registry.log_index(uri, mv.run_id, index)
    client = registry.configure(uri)
    client.log_metric(mv.run_id, "index_recall_at_k", float(p.recall_at_k or 0))
    for key, value in {
        "index_kind": p.kind,
        "index_params": p.model_dump_json(),
        "index_recall": f"{p.recall_at_k:.6f}",
    }.items():
        client.set_model_version_tag(
            model_settings.retrieval_model_name, str(mv.version), key, value
        )
    return index, {"version": int(mv.version), "run_id": mv.run_id, "params": p.model_dump()}


def command(
    alias: Annotated[
        str, typer.Option(help="Registry alias or version number of the retrieval model.")
    ] = "challenger",
    training_set: Annotated[
        str | None, typer.Option(help="Training set folder whose items/ to index.")
    ] = None,
) -> None:
    """Embed the catalogue with a model version and log its FAISS index to that version."""
    _, info = run_index(alias=alias, training_set=training_set)
    typer.echo(f"done: {info}")


if __name__ == "__main__":
    typer.run(command)
