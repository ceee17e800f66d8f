"""Every Redis key of the online store, built from one prefix (``fr`` by default).

Single Redis node; the write script touches many keys, so a Redis Cluster deployment would
need hash tags per shard.

==========================================  ===================================================
``fr:i:<media_id>``                          item: packed ``layout.ITEM_LAYOUT`` record (static
                                             catalogue fields, lifetime counters, 24 h / 1 h rings)
``fr:u:<user_id>`` (hash)                    ``core``: packed ``USER_CORE_LAYOUT`` (7-day rings of
                                             video/audio plays, seconds consumed, new sessions,
                                             completions, likes, dislikes);
                                             ``cat:<category>`` / ``lang:<language>``: packed
                                             ``USER_AFFINITY_LAYOUT`` 7-day ring of plays
``fr:u:<user_id>:recent`` (zset)             media played, score = last play time (s), newest 200
``fr:u:<user_id>:pos`` (zset)                media positively engaged (``POSITIVE_EVENTS``:
                                             completed, liked, shared, added to playlist, replay,
                                             subscription), score = last such event time (**ms**),
                                             newest 200; same TTL as ``:recent``
``fr:u:<user_id>:subs`` (set)                creators the user subscribed to
``fr:c:<creator_id>:subs`` (set)             users subscribed to the creator
``fr:creator_subs`` (hash)                   creator code -> distinct subscriber count
``fr:sess:<session_id>``                     marks a session as counted (TTL 2 days)
``fr:active:<hour>`` (set)                   items played in that clock hour (trending input)
``fr:vocab:<kind>`` / ``:rev`` / ``:next``   category / language / creator name <-> int code
``fr:offsets:<group>`` (hash)                ``<topic>:<partition>`` -> last Kafka offset applied
``fr:trending:all`` / ``:t:<type>`` /        trending lists (zsets), all / per content type /
``:l:<lang>`` / ``:t:<type>:l:<lang>``       per language / both; ``:keys`` (set) lists them,
                                             ``:meta`` (hash) holds the last refresh
``fr:newest:t:<type>`` (zset)                newest published items of a content type
==========================================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key builders for one store prefix."""

    prefix: str = "fr"

    def item(self, media_id: str) -> str:
        return f"{self.prefix}:i:{media_id}"

    def item_prefix(self) -> bytes:
        return f"{self.prefix}:i:".encode()

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:u:{user_id}"

    def user_recent(self, user_id: str) -> str:
        return f"{self.prefix}:u:{user_id}:recent"

    def user_positive(self, user_id: str) -> str:
        return f"{self.prefix}:u:{user_id}:pos"

    def user_subs(self, user_id: str) -> str:
        return f"{self.prefix}:u:{user_id}:subs"

    def creator_subs(self, creator_id: str) -> str:
        return f"{self.prefix}:c:{creator_id}:subs"

    def creator_counts(self) -> str:
        return f"{self.prefix}:creator_subs"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:sess:{session_id}"

    def active(self, hour: int) -> str:
        return f"{self.prefix}:active:{hour}"

    def offsets(self, group: str) -> str:
        return f"{self.prefix}:offsets:{group}"

    def canary_abort(self, experiment: str) -> str:
        """The guardrail's abort record of a canary experiment (JSON string)."""
        return f"{self.prefix}:canary:{experiment}:abort"

    def canary_counts(self, experiment: str) -> str:
        """Hash of a canary experiment's served counts, summed over ingress replicas."""
        return f"{self.prefix}:canary:{experiment}:counts"

    def vocab(self, kind: str) -> list[str]:
        """The forward hash, the reverse hash and the next-code counter of a vocabulary."""
        base = f"{self.prefix}:vocab:{kind}"
        return [base, base + ":rev", base + ":next"]

    def trending(self, content_type: str | None = None, language: str | None = None) -> str:
        key = f"{self.prefix}:trending"
        if content_type is None and language is None:
            return key + ":all"
        if content_type is not None:
            key += f":t:{content_type}"
        if language is not None:
            key += f":l:{language}"
        return key

    def trending_registry(self) -> str:
        return f"{self.prefix}:trending:keys"

    def trending_meta(self) -> str:
        return f"{self.prefix}:trending:meta"

    def newest(self, content_type: str) -> str:
        return f"{self.prefix}:newest:t:{content_type}"
