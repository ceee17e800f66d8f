"""A built training set on disk and in memory: the examples' schema, Parquet <-> frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.models.config import FeatureSettings
from app.models.features import ITEM_DENSE, USER_DENSE

ITEM_STATIC = ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur")
LABELS = ("label_completed", "label_strong", "label_negative", "value")


@dataclass
class TrainingSet:
    """Frames of one build (see the module docstring for columns) plus its metadata."""

    train: pd.DataFrame
    eval: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict

    def positives(self, split: str = "train") -> pd.DataFrame:
        frame = self.train if split == "train" else self.eval
        return frame[frame["positive"]].reset_index(drop=True)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A frame as Arrow; columns of equal-length numpy rows become fixed-size lists."""
    cols = {}
    for name in frame.columns:
        values = frame[name]
        if values.dtype == object and len(values) and isinstance(values.iloc[0], np.ndarray):
            arr = np.stack(values.to_numpy())
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1])
        else:
            cols[name] = pa.array(values.to_numpy())
    return pa.table(cols)


def load_frame(
    path: str | Path, sort: list[str] | None = None, *, sample: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """A saved folder back as a frame (fixed-size list columns become numpy rows).

    ``sample``: at most that many rows, drawn uniformly (seeded) before the conversion.
    """
    table = pq.read_table(str(path))
    if sample is not None and table.num_rows > sample:
        rows = np.random.default_rng(seed).choice(table.num_rows, sample, replace=False)
        table = table.take(np.sort(rows))
    if sort:
        table = table.sort_by([(name, "ascending") for name in sort])
    frame = table.to_pandas()
    for name in table.column_names:
        if pa.types.is_fixed_size_list(table[name].type):
            width = table[name].type.list_size
            flat = pc.list_flatten(table[name]).to_numpy(zero_copy_only=False)
            frame[name] = list(flat.reshape(-1, width))
    return frame


def load_training_set(path: str | Path) -> TrainingSet:
    """A built folder as frames: examples in time order, users by id, items as built."""
    path = Path(path)
    examples = ["ts_ms", "user_id", "media_id"]
    return TrainingSet(
        load_frame(path / "train", examples),
        load_frame(path / "eval", examples),
        load_frame(path / "items"),
        load_frame(path / "users", ["user_id"]),
        meta=json.loads((path / "meta.json").read_text()),
    )


def columns(
    frame: pd.DataFrame, names: tuple[str, ...] | list[str] | None = None
) -> dict[str, np.ndarray]:
    """Numpy columns of a frame (list columns stacked to [n, w])."""
    out = {}
    for name in names or frame.columns:
        values = frame[name]
        if values.dtype == object and len(values) and isinstance(values.iloc[0], np.ndarray):
            out[name] = np.stack(values.to_numpy())
        else:
            out[name] = values.to_numpy()
    return out


def example_schema(cfg: FeatureSettings, final: bool = False) -> pa.Schema:
    """Columns of the examples (``final``: as written, with log_q and weight, without split)."""

    def ints(n: int) -> pa.DataType:
        return pa.int64() if n == 1 else pa.list_(pa.int64(), n)

    fields = [
        ("user_id", pa.string()), ("media_id", pa.string()), ("ts_ms", pa.int64()),
        *((name, pa.float32()) for name in LABELS), ("day", pa.int64()),
        ("u_hash", pa.int64()), ("u_cats", ints(cfg.top_categories)), ("u_lang", pa.int64()),
        ("u_hist", ints(cfg.history_len)), ("u_pref", pa.int64()),
        ("u_dense", pa.list_(pa.float32(), USER_DENSE)),
        *((name, pa.int64()) for name in ITEM_STATIC),
        ("i_dense", pa.list_(pa.float32(), ITEM_DENSE)), ("type_match", pa.float32()),
        ("positive", pa.bool_()),
    ]  # fmt: skip
    if final:
        return pa.schema([*fields, ("log_q", pa.float32()), ("weight", pa.float32())])
    return pa.schema([*fields, ("split", pa.string())])
