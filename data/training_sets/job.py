"""The Ray Data job that builds a training set (the steps are in the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.features.offline import (
    COUNTERS,
    DAY_MS,
    EVENT_COLUMNS,
    catalogue_frame,
    decode_events,
    item_counters,
    item_features,
    slot_table,
    user_features,
)
from app.models.config import FeatureSettings
from app.models.features import stable_hash, type_match
from app.storage import resolve_fs
from data.training_sets.frames import ITEM_STATIC, LABELS, example_schema, to_arrow

BUCKET = "_bucket"

_SHARED: dict[str, Any] = {}


def _shared(refs: list[Any]) -> Any:
    """The driver's shared tables (one ``ray.get`` per worker process and build)."""
    import ray

    key = refs[0].hex()
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = ray.get(refs[0])
    return _SHARED[key]


def _read(
    batch: dict[str, np.ndarray], *, root: str, buckets: int, exclude: list[str]
) -> pd.DataFrame:
    """One group of event files -> decoded events tagged with their day and user bucket."""
    fs, _ = resolve_fs(root)
    frames = [
        decode_events(pq.read_table(path, columns=EVENT_COLUMNS, filesystem=fs))
        for path in batch["path"]
    ]
    events = pd.concat(frames, ignore_index=True)
    if exclude:
        events = events[~events["media_id"].isin(exclude)].reset_index(drop=True)
    events["media_id"] = events["media_id"].fillna("")
    events["day"] = events["ts"] // DAY_MS
    events[BUCKET] = stable_hash(events["user_id"], buckets + 1) % buckets
    return events


def _item_day_counts(events: pd.DataFrame) -> pd.DataFrame:
    """Item counters per (item, day) of one block, with the block's latest event time."""
    counts = item_counters(events, ["media_id", "day"])
    counts["ts_max"] = int(events["ts"].max()) if len(events) else 0
    return counts


def _bucket_examples(events: pd.DataFrame, *, refs: list[Any], users_out: str) -> pa.Table:
    """Examples of one bucket's users; writes their end-of-data features as a side output."""
    shared = _shared(refs)
    plan, cfg, catalogue = shared["plan"], shared["features"], shared["catalogue"]
    bucket = int(events[BUCKET].iloc[0])
    events = events.drop(columns=[BUCKET])
    slots = slot_table(events, shared["signal_weights"])
    parts = []
    for day in range(plan["first_example_day"], plan["last_day"] + 1):
        at = day * DAY_MS
        upper = at + DAY_MS if day < plan["last_day"] else np.iinfo(np.int64).max
        chunk = slots[(slots["ts"] >= at) & (slots["ts"] < upper)]
        if len(chunk):
            parts.append(_examples(chunk, events, shared, day))
    users = np.sort(events["user_id"].unique())
    uf = user_features(events, catalogue, users, plan["end_ms"], cfg)
    frame = pd.DataFrame({"user_id": users})
    for name, values in uf.items():
        frame[name] = list(values) if values.ndim == 2 else values
    Path(users_out).mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(frame), f"{users_out}/part-{bucket:05d}.parquet")  # retry-safe
    schema = example_schema(cfg)
    if not parts:
        return schema.empty_table()
    return to_arrow(pd.concat(parts, ignore_index=True)).cast(schema)


def _examples(slots: pd.DataFrame, events: pd.DataFrame, shared: dict, day: int) -> pd.DataFrame:
    plan, cfg = shared["plan"], shared["features"]
    users = slots["user_id"].unique()
    uf = user_features(events, shared["catalogue"], users, day * DAY_MS, cfg)
    rows = pd.Index(users).get_indexer(slots["user_id"])
    out = slots[["user_id", "media_id", "ts", *LABELS]].rename(columns={"ts": "ts_ms"})
    out["day"] = day - plan["first_day"]
    for name, values in uf.items():
        out[name] = list(values[rows]) if values.ndim == 2 else values[rows]
    item = pd.Index(shared["catalogue"]["media_id"]).get_indexer(out["media_id"])
    known = item >= 0
    for name in ITEM_STATIC:
        out[name] = np.where(known, shared["items"][name][item], 0).astype(np.int64)
    dense = shared["dense"][day - plan["first_example_day"]]
    out["i_dense"] = list(np.where(known[:, None], dense[item], np.float32(0.0)))
    out["type_match"] = type_match(out["u_pref"].to_numpy(), out["i_type"].to_numpy())
    out["positive"] = out["value"] >= cfg.positive_threshold
    out["split"] = np.where(out["ts_ms"] >= plan["eval_from_ms"], "eval", "train")
    return out


def _train_counts(batch: pd.DataFrame) -> pd.DataFrame:
    train = batch[batch["split"] == "train"]
    return (
        pd.DataFrame(
            {
                "media_id": train["media_id"],
                "i_hash": train["i_hash"],
                "train_starts": 1,
                "train_positives": train["positive"].astype(np.int64),
            }
        )
        .groupby(["media_id", "i_hash"], sort=False)
        .sum()
        .reset_index()
    )


def _finish(batch: pa.Table, *, split: str, refs: list[Any]) -> pa.Table:
    """Rows of ``split`` with ``log_q`` (log share of training positives) and ``weight``."""
    log_q = _shared(refs)
    batch = batch.filter(pc.equal(batch["split"], split)).drop_columns(["split"])
    hashes = batch["i_hash"].to_numpy()
    values = log_q["log_q"].reindex(hashes).fillna(log_q["missing"]).to_numpy(np.float32)
    return batch.append_column("log_q", pa.array(values)).append_column(
        "weight", pa.array(np.ones(batch.num_rows, np.float32))
    )


@contextmanager
def task_based_shuffle() -> Iterator[None]:
    """Ray Data shuffles run as the task-based sort shuffle inside the block (the default
    hash shuffle starts aggregator actors, which costs more than these small shuffles)."""
    from ray.data.context import DataContext, ShuffleStrategy

    ctx = DataContext.get_current()
    previous = ctx.shuffle_strategy
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield
    finally:
        ctx.shuffle_strategy = previous


# --- the job ----------------------------------------------------------------------------------


def _day_plan(
    counts: pd.DataFrame, data_end_ms: int, history_days: int, eval_days: float, buckets: int
) -> dict:
    per_day = counts.groupby("day")["n"].sum()
    first_day = int(per_day.index.min())
    dense_days = np.zeros(int(per_day.index.max()) - first_day + 1)
    dense_days[per_day.index.to_numpy(np.int64) - first_day] = per_day.to_numpy()
    # a trailing sliver (sessions running past the last midnight) is not a day of its own
    last_day = first_day + int(np.flatnonzero(dense_days >= 0.2 * dense_days.max()).max())
    end_ms = (last_day + 1) * DAY_MS
    return {
        "first_day": first_day,
        "first_example_day": first_day + history_days,
        "last_day": last_day,
        "end_ms": end_ms,
        # the held-out days end with the data, which may stop part-way through its last day
        # (a world simulated up to now): counted from that day's midnight they could be empty
        "eval_from_ms": min(end_ms, data_end_ms) - int(eval_days * DAY_MS),
        "buckets": buckets,
    }


def _item_tables(
    counts: pd.DataFrame, catalogue: pd.DataFrame, plan: dict, cfg: FeatureSettings
) -> tuple[dict[str, np.ndarray], np.ndarray, pd.DataFrame]:
    """(static i_* arrays, i_dense as of each example day [days, items, 5], items as of the end)."""
    ids = pd.Index(catalogue["media_id"])
    first, n_days = plan["first_day"], plan["last_day"] + 1 - plan["first_day"]
    row = ids.get_indexer(counts["media_id"])
    day = counts["day"].to_numpy(np.int64) - first
    keep = (row >= 0) & (day < n_days)
    grid = np.zeros((n_days + 1, len(ids), len(COUNTERS)))
    np.add.at(grid, (day[keep] + 1, row[keep]), counts[list(COUNTERS)].to_numpy()[keep])
    before = np.cumsum(grid, axis=0)  # before[k]: counters of the days before first + k

    def as_of(day_abs: int) -> pd.DataFrame:
        counters = pd.DataFrame(before[day_abs - first], columns=list(COUNTERS))
        counters["media_id"] = ids.to_numpy()
        return item_features(counters, catalogue, day_abs * DAY_MS, cfg)

    dense = [
        np.stack(as_of(d)["i_dense"].to_numpy())
        for d in range(plan["first_example_day"], plan["last_day"] + 1)
    ]
    end = as_of(plan["last_day"] + 1)
    cube = np.stack(dense) if dense else np.zeros((0, len(ids), 5), np.float32)
    return {name: end[name].to_numpy(np.int64) for name in ITEM_STATIC}, cube, end


def build_training_set(
    events_path: str | Path,
    catalogue_path: str | Path,
    out: str | Path,
    cfg: FeatureSettings | None = None,
    *,
    signal_weights: dict | None = None,
    eval_days: float = 1.0,
    history_days: int = 1,
    exclude_items: set[str] | None = None,
    buckets: int | None = None,
) -> Path:
    """Build the training set of the store under ``out`` (see the module docstring).

    ``exclude_items``: media ids whose events are dropped everywhere (a cold-start
    hold-out). ``buckets``: user hash buckets (default: 4 per cluster CPU). Joins the
    process' Ray cluster, or starts a local one.
    """
    import ray
    import ray.data

    from app.config import DEFAULT_SIGNAL_WEIGHTS
    from app.storage import read_catalogue
    from data.ingest import event_files

    cfg = cfg or FeatureSettings()
    out = Path(out)
    files = event_files(str(events_path))
    if not files:
        raise FileNotFoundError(f"no events under {events_path}")
    catalogue = catalogue_frame(read_catalogue(str(catalogue_path)))
    if catalogue.empty:
        raise FileNotFoundError(f"no catalogue records under {catalogue_path}")
    if not ray.is_initialized():
        ray.init()
    fs, _ = resolve_fs(str(events_path))
    if buckets is None:  # 4 per CPU, and at most about a million events per bucket
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = sum(pq.ParquetFile(fs.open_input_file(f)).metadata.num_rows for f in files)
        buckets = max(2, 4 * cpus, -(-n // 1_000_000))
    weights = {str(k): float(v) for k, v in (signal_weights or DEFAULT_SIGNAL_WEIGHTS).items()}
    for name in ("train", "eval", "users", "items"):
        if (out / name).exists():
            for f in (out / name).iterdir():
                f.unlink()
    with task_based_shuffle():  # datasets keep the context they were created in
        # files are read in groups, one task each (a task per small hourly file costs more
        # than reading it)
        events = ray.data.from_items(
            [{"path": path} for path in files], override_num_blocks=min(len(files), buckets)
        ).map_batches(
            _read,
            batch_size=None,
            batch_format="numpy",
            fn_kwargs={
                "root": str(events_path),
                "buckets": buckets,
                "exclude": sorted(exclude_items or ()),
            },
        )
        # per-block partial counters, summed in the driver (items x days: small)
        partial = events.map_batches(_item_day_counts, batch_format="pandas").to_pandas()
        data_end_ms = int(partial.pop("ts_max").max()) + 1
        counts = partial.groupby(["media_id", "day"], sort=False).sum().reset_index()
        plan = _day_plan(counts, data_end_ms, history_days, eval_days, buckets)
        static, cube, items = _item_tables(counts, catalogue, plan, cfg)
        shared = ray.put(
            {
                "plan": plan,
                "features": cfg,
                "signal_weights": weights,
                "catalogue": catalogue[["media_id", "category", "language"]],
                "items": static,
                "dense": cube,
            }
        )
        examples = (
            events.groupby(BUCKET, num_partitions=buckets)
            .map_groups(
                _bucket_examples,
                batch_format="pandas",
                fn_kwargs={"refs": [shared], "users_out": str(out / "users")},
            )
            .materialize()
        )
    partial = examples.map_batches(_train_counts, batch_format="pandas").to_pandas()
    if partial.empty:  # no training rows (everything is evaluation)
        partial = pd.DataFrame(columns=["media_id", "i_hash", "train_starts", "train_positives"])
    per_item = partial.groupby("media_id")[["train_starts", "train_positives"]].sum()
    pos = partial.groupby("i_hash")["train_positives"].sum()
    pos = pos[pos > 0]
    total = max(int(pos.sum()), 1)
    log_q = ray.put(
        {"log_q": np.log(pos.astype(np.float64) / total), "missing": np.log(0.5 / total)}
    )
    rows = {}
    for split in ("train", "eval"):
        part = examples.map_batches(
            _finish, batch_format="pyarrow", fn_kwargs={"split": split, "refs": [log_q]}
        )
        part.write_parquet(str(out / split))
        if not list((out / split).glob("*.parquet")):  # no rows: an empty file keeps the schema
            (out / split).mkdir(parents=True, exist_ok=True)
            pq.write_table(
                example_schema(cfg, final=True).empty_table(), out / split / "empty.parquet"
            )
        rows[split] = pq.ParquetDataset(str(out / split)).read(columns=["positive"])
    for name in ("train_starts", "train_positives"):
        items[name] = items["media_id"].map(per_item[name]).fillna(0).to_numpy(np.int64)
    (out / "items").mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(items), out / "items" / "part-0.parquet")
    meta = {
        "events_path": str(events_path),
        "catalogue_path": str(catalogue_path),
        "first_day_ms": plan["first_day"] * DAY_MS,
        "eval_from_ms": plan["eval_from_ms"],
        "end_ms": plan["end_ms"],
        "train_rows": rows["train"].num_rows,
        "eval_rows": rows["eval"].num_rows,
        "train_positives": int(pc.sum(rows["train"]["positive"]).as_py() or 0),
        "eval_positives": int(pc.sum(rows["eval"]["positive"]).as_py() or 0),
        "items": len(items),
        "users": pq.ParquetDataset(str(out / "users")).read(columns=["user_id"]).num_rows,
        "excluded_items": len(exclude_items or ()),
        "features": cfg.model_dump(mode="json"),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
