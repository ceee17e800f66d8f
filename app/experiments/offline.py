"""Reading an experiment's data from the offline store (pyarrow datasets, no Kafka).

- exposures: ``app.storage.exposures_root`` (``EXPOSURE_SCHEMA``, landed by ``feedray
  ingest``), one row per exposed item, read as the exposures frame of
  ``app.experiments.metrics`` (``degraded`` is True when the feed degraded);
- engagement events: ``app.storage.offline_root``, the frame ``metrics`` reads;
- user attributes (``<offline>/users/``: ``user_id`` and the audit's group columns, such as
  ``age_band`` and ``language``) and creator attributes (``<offline>/creators/``:
  ``creator_id``, ``language``, ``subscribers``), joined to the catalogue as the audit's
  items frame. Either table may be absent: the audit then tests what is known.

Both stores are hive-partitioned ``date=YYYY-MM-DD/hour=HH``; a window read prunes the date
folders and filters on the row's own time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from app.config import FeedraySettings
from app.storage import (
    EXPOSURE_SCHEMA,
    catalogue_root,
    exposures_root,
    offline_root,
    read_catalogue,
    resolve_fs,
    sibling_root,
)

TS = pa.timestamp("ms", tz="UTC")
PARTITIONS = pads.partitioning(
    pa.schema([("date", pa.string()), ("hour", pa.string())]), flavor="hive"
)
EVENT_COLUMNS = ["user_id", "media_id", "event_type", "timestamp", "session_id"]


def users_root(settings: FeedraySettings) -> str:
    """User attributes beside the catalogue (``<state_dir>/offline/users``)."""
    return sibling_root(catalogue_root(settings), "users")


def creators_root(settings: FeedraySettings) -> str:
    """Creator attributes beside the catalogue (``<state_dir>/offline/creators``)."""
    return sibling_root(catalogue_root(settings), "creators")


def _dataset(root: str, schema: pa.Schema | None = None) -> pads.Dataset | None:
    fs, base = resolve_fs(root)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return None
    if schema is not None:
        schema = pa.unify_schemas([schema, PARTITIONS.schema])
    return pads.dataset(
        base, filesystem=fs, format="parquet", partitioning=PARTITIONS, schema=schema
    )


def _dates(start: datetime, end: datetime) -> list[str]:
    day, last, out = start.astimezone(UTC).date(), end.astimezone(UTC).date(), []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def read_window(
    root: str,
    time_column: str,
    start: datetime,
    end: datetime,
    columns: list[str],
    schema: pa.Schema | None = None,
    where: pc.Expression | None = None,
) -> pa.Table | None:
    """Rows of the hive-partitioned store at ``root`` with ``start <= time_column < end``
    (only the date folders of the window are listed); None when the store does not exist."""
    dataset = _dataset(root, schema)
    if dataset is None:
        return None
    condition = (
        pc.field("date").isin(_dates(start, end))
        & (pc.field(time_column) >= pa.scalar(start, TS))
        & (pc.field(time_column) < pa.scalar(end, TS))
    )
    if where is not None:
        condition = condition & where
    return dataset.to_table(columns=columns, filter=condition)


def of_experiment(experiment: str | None) -> pc.Expression | None:
    """Rows of ``experiment`` (None: every row); rows without an experiment name (logged
    before exposures carried it) count for any experiment."""
    if experiment is None:
        return None
    return pc.field("experiment").is_null() | (pc.field("experiment") == experiment)


def read_exposures(
    settings: FeedraySettings, start: datetime, end: datetime, experiment: str | None = None
) -> pd.DataFrame:
    """The exposures frame of ``metrics`` for ``[start, end)`` (of ``experiment`` only, when
    named: ``of_experiment``), plus ``position``, ``model_versions`` (a JSON-free
    ``{name: version}`` per row), the feed's ``latency_ms`` and ``experiment``."""
    columns = ["request_id", "user_id", "arm", "media_id", "position", "served_at"]
    table = read_window(
        exposures_root(settings),
        "served_at",
        start,
        end,
        [*columns, "degraded", "model_versions", "latency_ms", "experiment"],
        EXPOSURE_SCHEMA,
        where=of_experiment(experiment),
    )
    if table is None or table.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*columns, "degraded"]})
    degraded = pc.greater(pc.fill_null(pc.list_value_length(table.column("degraded")), 0), 0)
    frame = table.drop_columns(["degraded"]).append_column("degraded", degraded).to_pandas()
    frame["model_versions"] = [dict(v) if v is not None else {} for v in frame["model_versions"]]
    return frame


def read_events(settings: FeedraySettings, start: datetime, end: datetime) -> pd.DataFrame:
    """Engagement events of ``[start, end)`` (``metrics``' events frame)."""
    table = read_window(offline_root(settings), "timestamp", start, end, EVENT_COLUMNS)
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
    return table.to_pandas()


def first_exposure(
    settings: FeedraySettings,
    arm: str,
    after: datetime,
    before: datetime,
    experiment: str | None = None,
) -> datetime | None:
    """When ``arm`` was first served in ``[after, before)`` (in ``experiment``, when named),
    or None."""
    named = of_experiment(experiment)
    table = read_window(
        exposures_root(settings),
        "served_at",
        after,
        before,
        ["served_at"],
        EXPOSURE_SCHEMA,
        where=(pc.field("arm") == arm) if named is None else (pc.field("arm") == arm) & named,
    )
    if table is None or table.num_rows == 0:
        return None
    return pc.min(table.column("served_at")).as_py()


def arm_versions(exposures: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per arm, the model versions most of its feeds were served with."""
    out: dict[str, dict[str, str]] = {}
    if exposures.empty or "model_versions" not in exposures:
        return out
    feeds = exposures.drop_duplicates("request_id")
    for arm, group in feeds.groupby("arm"):
        versions = pd.DataFrame(list(group["model_versions"]), index=group.index)
        out[str(arm)] = {
            str(name): str(column.mode().iloc[0])
            for name, column in versions.items()
            if column.notna().any()
        }
    return out


def _table(root: str) -> pd.DataFrame | None:
    fs, base = resolve_fs(root)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return None
    return pads.dataset(base, filesystem=fs, format="parquet").to_table().to_pandas()


def read_user_attributes(settings: FeedraySettings) -> pd.DataFrame:
    """``user_id`` and whatever attribute columns ``<offline>/users/`` holds (may be none)."""
    users = _table(users_root(settings))
    if users is None:
        return pd.DataFrame({"user_id": pd.Series(dtype=str)})
    return users.assign(user_id=users["user_id"].astype(str)).drop_duplicates(
        "user_id", keep="last"
    )


def read_item_attributes(settings: FeedraySettings) -> pd.DataFrame:
    """The audit's items frame: the catalogue (``category``, ``content_type``, ...) with the
    creator's ``creator_language`` and ``creator_subscribers`` when creators are known."""
    items = read_catalogue(catalogue_root(settings)).to_pandas()
    creators = _table(creators_root(settings))
    if creators is None or items.empty:
        return items
    creators = creators.drop_duplicates("creator_id", keep="last").set_index("creator_id")
    renamed = {"language": "creator_language", "subscribers": "creator_subscribers"}
    creators = creators[[c for c in renamed if c in creators]].rename(columns=renamed)
    return items.join(creators, on="creator_id")
