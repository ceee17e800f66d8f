"""The hot item-read path in hand-encoded RESP: one write of ``MGET`` + ``HMGET``, one round trip.

Skips redis-py's per-argument packing and pipeline bookkeeping. Each item's RESP-encoded key
and creator code are cached (static catalogue data), so a read of N cached items only joins
pre-encoded bytes.
"""

from __future__ import annotations

from typing import Any

import redis


def resp_bulk(arg: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def send_packed(client: redis.Redis, packed: bytes, replies: int) -> list[Any]:
    """Send pre-encoded commands in one write and read their replies (one round trip).

    A broken connection is dropped (and the error raised) as redis-py would.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([packed])
        return [conn.read_response() for _ in range(replies)]
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


class CreatorCodeCache:
    """media_id -> (creator code, RESP item key, RESP code), cleared when it reaches ``size``."""

    def __init__(self, item_prefix: bytes, creator_counts_key: str, size: int = 2_000_000) -> None:
        self.size = size
        self._item_prefix = item_prefix
        self._counts_key = resp_bulk(creator_counts_key.encode())
        self._entries: dict[str, tuple[int, bytes, bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, media_id: str, code: int) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[media_id] = (
            code,
            resp_bulk(self._item_prefix + media_id.encode()),
            resp_bulk(b"%d" % code),
        )

    def make_room(self, n: int) -> None:
        """Clear the cache when ``n`` more entries would overflow it."""
        if len(self._entries) + n > self.size:
            self._entries.clear()

    def lookup(self, media_ids: list[str]) -> list[tuple[int, bytes, bytes]] | None:
        """The entries of every item, or None when one is not cached."""
        entries = self._entries
        try:
            return [entries[m] for m in media_ids]
        except KeyError:
            return None

    def read(
        self, client: redis.Redis, cached: list[tuple[int, bytes, bytes]]
    ) -> tuple[list[bytes | None], list[bytes | None]]:
        """``MGET <records>`` + ``HMGET <creator counts> <codes>`` in one write."""
        n = len(cached)
        blobs, counts = send_packed(
            client,
            b"".join(
                [b"*%d\r\n$4\r\nMGET\r\n" % (n + 1), *[c[1] for c in cached],
                 b"*%d\r\n$5\r\nHMGET\r\n" % (n + 2), self._counts_key, *[c[2] for c in cached]]
            ),
            2,
        )  # fmt: skip
        return blobs, counts
