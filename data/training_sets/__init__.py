"""Point-in-time training sets from the Parquet offline store, built with Ray Data.

Inputs: events ``<root>/date=YYYY-MM-DD/hour=HH/*.parquet`` with at least ``event_type,
user_id, media_id, content_type, timestamp, session_id`` (the ingestion job's enriched schema
and the simulator's ``ParquetSink`` output both qualify) and the catalogue
(``app.storage.CATALOGUE_SCHEMA``; one row per item, the latest record wins).

One example = one **slot**: a (user, item, session) that was started, with its labels
(``label_completed``, ``label_strong``, ``label_negative``, ``value`` = summed signal
weights, ``positive`` = value >= positive_threshold). Features are **point-in-time by
day**: an example on day D sees user features over ``[D - user_window, D)`` and item
counters over ``[-inf, D)`` only, never an event of its own day. The first
``history_days`` only feed features; the last ``eval_days`` are the evaluation set. Feature
values come from ``app.features.offline`` (``app.features.definitions`` through
``app.models.features``, the code serving uses).

The job (:func:`build_training_set`):

1. ``read_parquet`` of the committed event files; each row is tagged with its day and a
   stable hash bucket of its user;
2. per-(item, day) counters (``map_batches`` + ``groupby().sum()``), from which the driver
   takes the day range and builds every item's i_* columns as of each midnight (a
   catalogue-sized table, shared with the workers through the object store);
3. ``groupby(bucket).map_groups``: each bucket holds all events of its users, so it builds
   their slots, their u_* columns as of each example's day, joins the item columns of that
   day, and writes its users' end-of-data features to ``users/part-<bucket>.parquet``;
4. the items' share of training positives (``log_q``) from per-block partial counts, then
   ``train/`` and ``eval/`` are written as Parquet (fixed-size list columns).

Output folder (read back with :func:`load_training_set`; see ``train.common``):
    train / eval: user_id, media_id, ts_ms, day, u_* and i_* columns (see
        app.models.features), type_match, label_completed, label_strong, label_negative,
        value, positive, log_q (the item's log share of training positives), weight
    items: media_id, i_* columns, published_ms, starts, train_starts, train_positives
        (features as of the end)
    users: user_id, u_* columns (features as of the end of the data)
    meta.json: the day range, row counts and the feature settings

Modules: ``frames`` (the schema, Parquet <-> frames), ``job`` (the Ray Data job).
"""

from data.training_sets.frames import (
    TrainingSet,
    columns,
    example_schema,
    load_frame,
    load_training_set,
    to_arrow,
)
from data.training_sets.job import build_training_set

__all__ = [
    "TrainingSet",
    "build_training_set",
    "columns",
    "example_schema",
    "load_frame",
    "load_training_set",
    "to_arrow",
]
