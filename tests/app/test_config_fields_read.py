"""Every field of the configuration is read somewhere in the code (or it goes)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from app.config import FeedraySettings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("app", "data", "deployments", "train", "bench", "scripts")


def field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Dotted path -> field name, for every field of ``model`` and of its nested sections."""
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        found[prefix + name] = name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= field_paths(annotation, f"{prefix}{name}.")
    return found


def read_names() -> set[str]:
    """Attribute names read anywhere in the code, plus names passed as keywords or strings."""
    names: set[str] = set()
    pattern = re.compile(r"\.([A-Za-z_]\w*)|\b([A-Za-z_]\w*)=|[\"']([A-Za-z_]\w*)[\"']")
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for match in pattern.finditer(path.read_text()):
                names.add(next(group for group in match.groups() if group))
    return names


def test_every_setting_is_read() -> None:
    read = read_names()
    unread = {path for path, name in field_paths(FeedraySettings).items() if name not in read}
    assert sorted(unread) == []
