"""The event collector: Kafka engagement events -> validated, enriched -> online features in Redis.

Modules: ``worker`` (one consumer's loop), ``batch`` (the aggregation into one Lua payload),
``metrics``, ``actors`` (workers in Ray actors), ``report`` (group progress and the run
report), ``run`` (the driver), ``command`` (``feedray collect``); dead letters:
``data.dead_letter``.

``run_collectors(settings, workers=N, until_idle=...)`` starts N Ray actors in one consumer
group on ``settings.kafka.topics.engagement``. Each actor loops:

1. ``consume`` up to ``batch_size`` messages;
2. validate each with ``app.schemas.parse_engagement_event`` (plus a size limit, and the item
   must be in the catalogue); rejects go to the dead-letter topic with the ORIGINAL bytes as
   value, the original key, and headers ``reason``, ``reason_code``, ``source_topic``,
   ``source_partition``, ``source_offset``, ``source_timestamp_ms``, ``consumer_group``;
3. enrich valid events with the item's catalogue metadata (category, creator, content type,
   duration, language; cached per process, read from the packed item records in Redis);
4. apply the whole batch with ONE atomic Lua script (``OnlineStore.apply``) that also records
   the last offset applied per (group, topic, partition) and refuses ranges at or below it;
   on such a conflict (a replay after a crash or a rebalance) the already-applied messages are
   dropped and the rest is applied, so nothing is double-counted;
5. flush the dead letters, then commit the Kafka offsets (synchronously) -- only after the
   Redis write succeeded. Redis errors (down, restarting, loading) are retried with
   exponential backoff without committing; the loop never dies on bad input.

Dead letters are at-least-once: a crash between the Redis write and the commit re-sends the
rejects of that batch on replay (their headers carry the source offset for dedupe).

Progress: the driver prints events/s and consumer lag per partition to stderr, and the actors
export ``feedray_collector_*`` counters and gauges through ``ray.util.metrics`` (Ray's
Prometheus endpoint).
"""
