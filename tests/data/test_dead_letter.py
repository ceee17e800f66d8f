"""Dead-letter reasons, shared by the collector and the catalogue consumer."""

from __future__ import annotations

from data.dead_letter import reason_code, screen


def test_reason_codes() -> None:
    assert reason_code("<message>: Invalid JSON: expected ident") == "not_json"
    assert reason_code("media_started.user_id: Field required") == "missing_field"
    assert (
        reason_code("<message>: Unable to extract tag using discriminator 'event_type'")
        == "missing_field"
    )
    assert (
        reason_code(
            "<message>: Input tag 'x' found using 'event_type' "
            "does not match any of the expected tags: a"
        )
        == "unknown_event_type"
    )
    assert reason_code("media_started.user_id: Input should be a valid string") == "wrong_type"


def test_empty_and_oversized_messages_are_refused_before_parsing() -> None:
    assert screen(None, 10) == ("empty", "empty message")
    assert screen(b"x" * 11, 10) == ("oversized", "message of 11 bytes exceeds 10")
    assert screen(b"x" * 10, 10) is None
    assert screen(b"", 10) is None  # left to the parser, which rejects it as not JSON
