"""Readers of public interaction datasets into one ``Dataset`` shape.

``Dataset.interactions`` has ``user_id``, ``item_id`` (strings), ``strength`` (float,
NaN when the format has none), ``timestamp`` (float seconds, NaN when absent), ``part``
("train" / "valid" / "test" for a pre-split dataset, "" otherwise) and ``row`` (the row's
position in file order, train then valid then test files). ``Dataset.items`` has
``item_id`` plus optional ``title``, ``category``, ``creator``.

Formats:

- ``recbole``: RecBole atomic files. PATH is a ``.inter`` file or a folder holding
  ``<name>.inter`` (or ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``, kept
  exactly as given); ``<name>.item`` is read when present. Headers are ``field:type``;
  the user / item fields are ``user_id`` / ``item_id``, the strength is ``rating`` (or
  ``label``), the time ``timestamp``. The item's ``class`` / ``genre`` first token is
  its category, ``movie_title`` / ``title`` its title.
- ``lastfm``: the HetRec 2011 layout: ``user_artists.dat`` (userID, artistID, weight =
  play count), ``artists.dat`` (names, optional) and ``user_taggedartists.dat``
  (optional; an artist's most used tag becomes its category). The artist is the creator.
- ``table``: CSV / TSV / Parquet by suffix with named columns (``Columns``); pre-split
  with ``valid`` and ``test`` paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMATS = ("recbole", "lastfm", "table")
STRENGTH_KINDS = ("implicit", "rating", "count")


class DatasetError(ValueError):
    """A dataset that cannot be read (missing file, missing column, bad values)."""


@dataclass(frozen=True)
class Columns:
    """Column names of a plain table."""

    user: str = "user_id"
    item: str = "item_id"
    strength: str | None = None
    timestamp: str | None = None


@dataclass
class Dataset:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    strength_kind: str = "implicit"  # implicit | rating | count
    content_type: str = "VIDEO"

    @property
    def pre_split(self) -> bool:
        return bool((self.interactions["part"] != "").any())


def _frame(
    parts: list[tuple[str, pd.DataFrame]],
    user: str,
    item: str,
    strength: str | None,
    ts: str | None,
) -> pd.DataFrame:
    out = []
    for part, raw in parts:
        for col in (user, item, strength, ts):
            if col is not None and col not in raw.columns:
                raise DatasetError(f"column {col!r} not found; columns are {list(raw.columns)}")
        f = pd.DataFrame(
            {
                "user_id": raw[user].astype(str).to_numpy(),
                "item_id": raw[item].astype(str).to_numpy(),
                "strength": pd.to_numeric(raw[strength], errors="coerce").to_numpy(np.float64)
                if strength
                else np.nan,
                "timestamp": pd.to_numeric(raw[ts], errors="coerce").to_numpy(np.float64)
                if ts
                else np.nan,
                "part": part,
            }
        )
        out.append(f)
    frame = pd.concat(out, ignore_index=True)
    if frame[["user_id", "item_id"]].isin(["", "nan", "None"]).any().any():
        raise DatasetError("empty user or item id")
    if strength and frame["strength"].isna().any():
        raise DatasetError(f"non-numeric values in strength column {strength!r}")
    if ts and frame["timestamp"].isna().any():
        raise DatasetError(f"non-numeric values in timestamp column {ts!r}")
    frame["row"] = np.arange(len(frame), dtype=np.int64)
    return frame


def _read_atomic(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    raw.columns = [c.split(":", 1)[0] for c in raw.columns]
    return raw


def read_recbole(path: str | Path) -> Dataset:
    p = Path(path)
    folder, name = (p.parent, p.name.split(".")[0]) if p.is_file() else (p, p.name)
    whole = folder / f"{name}.inter"
    given = [folder / f"{name}.{s}.inter" for s in ("train", "valid", "test")]
    if all(g.exists() for g in given):
        parts = [
            (s, _read_atomic(g)) for s, g in zip(("train", "valid", "test"), given, strict=True)
        ]
    elif whole.exists():
        parts = [("", _read_atomic(whole))]
    else:
        raise DatasetError(f"no {name}.inter (or .train/.valid/.test.inter) in {folder}")
    cols = parts[0][1].columns
    strength = next((c for c in ("rating", "label") if c in cols), None)
    ts = "timestamp" if "timestamp" in cols else None
    inter = _frame(parts, "user_id", "item_id", strength, ts)
    items = pd.DataFrame({"item_id": pd.unique(inter["item_id"])})
    item_file = folder / f"{name}.item"
    if item_file.exists():
        raw = _read_atomic(item_file)
        meta = pd.DataFrame({"item_id": raw["item_id"].astype(str)})
        title = next((c for c in ("movie_title", "title", "name") if c in raw), None)
        cat = next((c for c in ("class", "genre", "categories") if c in raw), None)
        if title:
            meta["title"] = raw[title]
        if cat:
            meta["category"] = raw[cat].str.split().str[0]
        items = meta.merge(items, on="item_id", how="outer")
    return Dataset(name, inter, items, "rating" if strength == "rating" else "implicit")


def read_lastfm(path: str | Path) -> Dataset:
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    ua = folder / "user_artists.dat"
    if not ua.exists():
        raise DatasetError(f"no user_artists.dat in {folder}")
    raw = pd.read_csv(ua, sep="\t", dtype=str)
    inter = _frame([("", raw)], "userID", "artistID", "weight", None)
    items = pd.DataFrame({"item_id": pd.unique(inter["item_id"])})
    items["creator"] = items["item_id"]
    artists = folder / "artists.dat"
    if artists.exists():
        names = pd.read_csv(artists, sep="\t", dtype=str, quoting=3).rename(
            columns={"id": "item_id", "name": "title"}
        )
        items = items.merge(names[["item_id", "title"]], on="item_id", how="left")
    tagged = folder / "user_taggedartists.dat"
    tags = folder / "tags.dat"
    if tagged.exists() and tags.exists():
        ut = pd.read_csv(tagged, sep="\t", dtype=str)
        top = ut.groupby(["artistID", "tagID"]).size().reset_index(name="n")
        top = top.sort_values(["artistID", "n", "tagID"], ascending=[True, False, True])
        top = top.drop_duplicates("artistID")
        values = pd.read_csv(tags, sep="\t", dtype=str, encoding="latin-1").set_index("tagID")
        top["category"] = top["tagID"].map(values["tagValue"])
        items = items.merge(
            top.rename(columns={"artistID": "item_id"})[["item_id", "category"]],
            on="item_id",
            how="left",
        )
    return Dataset("lastfm", inter, items, "count", "AUDIO")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix != ".csv" else ",", dtype=str)
    raise DatasetError(f"unknown table suffix {suffix!r} (csv, tsv, txt, parquet)")


def read_table(
    path: str | Path,
    columns: Columns = Columns(),
    *,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    strength_kind: str = "implicit",
) -> Dataset:
    if (valid is None) != (test is None):
        raise DatasetError("a pre-split table needs both valid and test paths")
    if strength_kind not in STRENGTH_KINDS:
        raise DatasetError(f"strength kind must be one of {STRENGTH_KINDS}")
    paths = [Path(path)] + ([Path(valid), Path(test)] if valid is not None else [])
    for p in paths:
        if not p.exists():
            raise DatasetError(f"no such file {p}")
    names = ("train", "valid", "test") if len(paths) == 3 else ("",)
    parts = [(n, _read_table(p)) for n, p in zip(names, paths, strict=True)]
    inter = _frame(parts, columns.user, columns.item, columns.strength, columns.timestamp)
    items = pd.DataFrame({"item_id": pd.unique(inter["item_id"])})
    kind = strength_kind if columns.strength else "implicit"
    return Dataset(Path(path).stem, inter, items, kind)


def read_dataset(fmt: str, path: str | Path, **options) -> Dataset:
    """Dispatch on ``fmt`` (one of ``FORMATS``)."""
    if fmt == "recbole":
        return read_recbole(path)
    if fmt == "lastfm":
        return read_lastfm(path)
    if fmt == "table":
        return read_table(path, **options)
    raise DatasetError(f"unknown format {fmt!r}; one of {FORMATS}")
