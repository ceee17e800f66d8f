"""The one definition of the packed binary layouts kept in Redis.

Every online state that must be read fast is a fixed-layout little-endian record with
no padding. A :class:`PackedLayout` is declared once here (field names, scalar kinds,
time-bucket rings with their sizes and widths); from it we generate

* the numpy structured dtype the readers decode with (``np.frombuffer``), and
* the Lua ``struct`` format plus a name -> position table that the write scripts
  (``app/features/redis_scripts/*.lua``) are rendered with,

so the Python readers and the Lua writers can never drift apart.

Rings: a ring of ``size`` time buckets of width ``bucket_s`` holds ``<ring>_id``
(int32 bucket index, ``timestamp // bucket_s``) and one count series per name
(``<ring>_<series>``). A write to bucket ``b`` goes to slot ``b % size``; when that slot
still holds an older bucket, the slot is reset first (every series of that ring), and an
event older than what the slot holds is dropped (it is outside every window anyway). The
window is computed at read time with ``definitions.windowed_sum``, so counts expire
without any background job.

Growing a layout: new series go at the end of the last ring (or new scalars / rings at the
end), so a record written with the previous layout is a byte prefix of the new one. List
the previous sizes in ``legacy_sizes``: readers (numpy and Lua) zero-extend such a record
instead of discarding it, so the new counters start at 0 and the old ones are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from app.features import definitions as d

# kind -> (numpy dtype, Lua struct format)
KINDS: dict[str, tuple[str, str]] = {
    "u8": ("u1", "B"),
    "u16": ("<u2", "H"),
    "u32": ("<u4", "I4"),
    "i32": ("<i4", "i4"),
    "f32": ("<f4", "f"),
    "f64": ("<f8", "d"),
}


@dataclass(frozen=True)
class Scalar:
    name: str
    kind: str


@dataclass(frozen=True)
class Ring:
    """``size`` buckets of ``bucket_s`` seconds; ``series`` name -> kind of each count."""

    name: str
    size: int
    bucket_s: int
    series: tuple[tuple[str, str], ...]

    @property
    def window_s(self) -> int:
        return self.size * self.bucket_s


@dataclass(frozen=True)
class PackedLayout:
    """A fixed binary record: scalars first (in order), then rings."""

    name: str
    scalars: tuple[Scalar, ...]
    rings: tuple[Ring, ...] = field(default_factory=tuple)
    # sizes of earlier versions of this layout that are byte prefixes of it (zero-extended on read)
    legacy_sizes: tuple[int, ...] = ()

    def columns(self) -> list[tuple[str, str, int]]:
        """(field name, kind, count) in storage order."""
        out = [(s.name, s.kind, 1) for s in self.scalars]
        for ring in self.rings:
            out.append((f"{ring.name}_id", "i32", ring.size))
            out.extend((f"{ring.name}_{series}", kind, ring.size) for series, kind in ring.series)
        return out

    @cached_property
    def dtype(self) -> np.dtype:
        return np.dtype(
            [(n, KINDS[k][0]) if c == 1 else (n, KINDS[k][0], (c,)) for n, k, c in self.columns()],
            align=False,
        )

    @property
    def size(self) -> int:
        return int(self.dtype.itemsize)

    @cached_property
    def lua_format(self) -> str:
        return "<" + "".join(KINDS[k][1] * c for _, k, c in self.columns())

    @cached_property
    def lua_positions(self) -> dict[str, tuple[int, int]]:
        """Field -> (1-based position in the unpacked value list, count)."""
        pos, out = 1, {}
        for name, _, count in self.columns():
            out[name] = (pos, count)
            pos += count
        return out

    @property
    def n_values(self) -> int:
        return sum(c for _, _, c in self.columns())

    def offset(self, name: str) -> int:
        """Byte offset of a field (for ``struct.unpack(fmt, blob, offset + 1)`` in Lua)."""
        return int(self.dtype.fields[name][1])

    def static_prefix_size(self, last_static: str) -> int:
        """Bytes up to and including scalar ``last_static``."""
        return self.offset(last_static) + self.dtype.fields[last_static][0].itemsize

    def lua_table(self) -> str:
        """A Lua table literal
        ``{fmt=..., n=..., size=..., f={name={pos,count},...}, rings=...}``."""
        fields = ", ".join(f"{n}={{{p},{c}}}" for n, (p, c) in self.lua_positions.items())
        rings = ", ".join(
            f"{r.name}={{size={r.size}, bucket_s={r.bucket_s}, series={{"
            + ", ".join(f"'{r.name}_{s}'" for s, _ in r.series)
            + "}}"
            for r in self.rings
        )
        legacy = ", ".join(f"[{n}]=true" for n in self.legacy_sizes)
        return (
            f"{{fmt='{self.lua_format}', n={self.n_values}, size={self.size}, "
            f"f={{{fields}}}, rings={{{rings}}}, legacy={{{legacy}}}}}"
        )

    def zeros(self, n: int = 1) -> np.ndarray:
        return np.zeros(n, dtype=self.dtype)

    def decode(self, blobs: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        """Records [n] and a found mask [n]; missing (None) or short blobs decode as zeros.

        A blob of one of ``legacy_sizes`` (the layout before fields were appended) is
        zero-extended: found, its old fields kept, the appended ones 0.
        """
        size, n = self.size, len(blobs)
        if None not in blobs:
            joined = b"".join(blobs)
            if len(joined) == n * size:  # the common case: every record present and well-formed
                return np.frombuffer(joined, dtype=self.dtype), np.ones(n, dtype=bool)
        empty = bytes(size)
        legacy = self.legacy_sizes
        parts, ok = [], []
        for b in blobs:
            if b is not None and len(b) == size:
                parts.append(b)
                ok.append(True)
            elif b is not None and len(b) in legacy:
                parts.append(b + empty[len(b) :])
                ok.append(True)
            else:
                parts.append(empty)
                ok.append(False)
        return np.frombuffer(b"".join(parts), dtype=self.dtype), np.array(ok, dtype=bool)


# --- the layouts -----------------------------------------------------------------------------

ITEM_STATIC = (
    Scalar("published_at_s", "f64"),
    Scalar("duration_s", "f32"),
    Scalar("creator", "u32"),  # vocabulary code (0 = unknown)
    Scalar("category", "u16"),  # vocabulary code
    Scalar("language", "u16"),  # vocabulary code
    Scalar("content_type", "u8"),  # 1 VIDEO, 2 AUDIO (0 = unknown)
    Scalar("flags", "u8"),  # bit 0: catalogue metadata present
)
ITEM_LAST_STATIC = "flags"
FLAG_CATALOGUED = 1

# Lifetime raw counters, one per event type (definitions.ITEM_COUNTERS order).
ITEM_LAYOUT = PackedLayout(
    "item",
    scalars=ITEM_STATIC + tuple(Scalar(name, "u32") for name in d.ITEM_COUNTERS),
    rings=(
        Ring("h24", d.WINDOW_24H_S // d.BUCKET_24H_S, d.BUCKET_24H_S, (("starts", "u32"),)),
        Ring("m5", d.WINDOW_1H_S // d.BUCKET_1H_S, d.BUCKET_1H_S, (("starts", "u32"),)),
    ),
)
ITEM_STATIC_SIZE = ITEM_LAYOUT.static_prefix_size(ITEM_LAST_STATIC)

# A user's 7-day core, per day: plays by content type, seconds consumed, new sessions, and
# the completions / likes / dislikes the models' ``u_dense`` needs (appended later: records
# of the first version, without them, are a byte prefix and are zero-extended on read).
_USER_CORE_V1_SERIES = (
    ("video", "u32"),
    ("audio", "u32"),
    ("consumed_s", "f64"),
    ("sessions", "u32"),
)
USER_CORE_LAYOUT_V1 = PackedLayout(
    "user_core_v1",
    scalars=(),
    rings=(Ring("d7", d.WINDOW_7D_S // d.BUCKET_7D_S, d.BUCKET_7D_S, _USER_CORE_V1_SERIES),),
)
USER_CORE_LAYOUT = PackedLayout(
    "user_core",
    scalars=(),
    rings=(
        Ring(
            "d7",
            d.WINDOW_7D_S // d.BUCKET_7D_S,
            d.BUCKET_7D_S,
            _USER_CORE_V1_SERIES + (("completes", "u32"), ("likes", "u32"), ("dislikes", "u32")),
        ),
    ),
    legacy_sizes=(USER_CORE_LAYOUT_V1.size,),
)

# One 7-day ring of plays per category / language of a user (hash fields cat:<name>, lang:<name>).
USER_AFFINITY_LAYOUT = PackedLayout(
    "user_affinity",
    scalars=(),
    rings=(Ring("d7", d.WINDOW_7D_S // d.BUCKET_7D_S, d.BUCKET_7D_S, (("n", "u32"),)),),
)

CONTENT_TYPE_CODES: dict[str, int] = {"VIDEO": 1, "AUDIO": 2}
CONTENT_TYPE_NAMES = np.array(["", "VIDEO", "AUDIO"], dtype=object)

LAYOUTS = {layout.name: layout for layout in (ITEM_LAYOUT, USER_CORE_LAYOUT, USER_AFFINITY_LAYOUT)}
