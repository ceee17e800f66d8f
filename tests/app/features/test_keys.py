"""Redis keys: every one carries the store prefix, and only ``app.features.keys`` builds them."""

from __future__ import annotations

import re
from pathlib import Path

from app.features.keys import RedisKeys

ROOT = Path(__file__).resolve().parents[3]


def test_every_key_carries_the_prefix() -> None:
    keys = RedisKeys("px")
    built = [
        keys.item("m1"), keys.user("u1"), keys.user_recent("u1"), keys.user_positive("u1"),
        keys.user_subs("u1"), keys.creator_subs("c1"), keys.creator_counts(), keys.session("s1"),
        keys.active(7), keys.offsets("g"), *keys.vocab("category"), keys.trending(),
        keys.trending("VIDEO"), keys.trending(None, "en"), keys.trending("AUDIO", "en"),
        keys.trending_registry(), keys.trending_meta(), keys.newest("VIDEO"),
    ]  # fmt: skip
    assert all(k.startswith("px:") for k in built)
    assert len(set(built)) == len(built)
    assert keys.item_prefix() + b"m1" == keys.item("m1").encode()


def test_no_module_builds_a_key_from_the_prefix_but_the_keys_module() -> None:
    pattern = re.compile(r"\.prefix\}:")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("app", "data", "deployments", "train")
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "app/features/keys.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
