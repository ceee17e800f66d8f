"""``feedray audience``: the event rate defaults to ``audience.events_per_s``."""

from __future__ import annotations

from pathlib import Path

import pytest

import app.config
import data.simulate.live as live
import data.simulate.sinks as sinks
from app.config import FeedraySettings
from app.stack.live import world_record_path
from data.simulate.world import WorldConfig


class _Sink:
    def __init__(self, settings: FeedraySettings) -> None:
        pass

    def close(self):
        return type("Stats", (), {"seconds": 0.0})()


@pytest.mark.parametrize(("option", "expected"), [(None, 7.0), (2.5, 2.5)])
def test_the_rate_defaults_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: float | None, expected: float
) -> None:
    settings = FeedraySettings(state_dir=tmp_path, audience={"events_per_s": 7.0})
    record = world_record_path(settings)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(WorldConfig(n_users=5, n_items=20, n_creators=2).model_dump_json())
    rates: list[float] = []
    real = live.LiveAudience

    def audience(world, rate, now_ms):
        rates.append(rate)
        return real(world, rate, now_ms)

    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    monkeypatch.setattr(sinks, "KafkaSink", _Sink)
    monkeypatch.setattr(live, "LiveAudience", audience)
    live.audience_command(events_per_s=option, max_seconds=0.0)
    assert rates == [expected]


class _FeedServer:
    """A loopback HTTP server answering every feed request with items m0..m4 (arm canary)."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        body = json.dumps(
            {"arm": "canary", "items": [{"media_id": f"m{k}"} for k in range(5)]}
        ).encode()
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.integration
def test_feeds_from_asks_the_service_and_sends_the_responses_to_kafka(
    monkeypatch: pytest.MonkeyPatch, kafka_topics: FeedraySettings, tmp_path: Path, capsys
) -> None:
    import json

    from tests.data.simulate.test_sim_run import drain

    settings = kafka_topics.model_copy(
        update={
            "state_dir": tmp_path,
            "audience": kafka_topics.audience.model_copy(
                update={"feed_limit": 5, "feed_threads": 2}
            ),
        }
    )
    record = world_record_path(settings)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(WorldConfig(seed=3, n_users=40, n_items=50, n_creators=5).model_dump_json())
    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    server = _FeedServer()
    try:
        live.audience_command(events_per_s=None, max_seconds=2.0, feeds_from=server.url)
    finally:
        server.close()
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["failures"] == 0 and stats["feeds"]["canary"] == len(server.paths) > 0
    assert all("limit=5" in path and "user_id=u" in path for path in server.paths)
    assert stats["events"] > 0
    messages = drain(settings, settings.kafka.topics.engagement, stats["events"])
    assert len(messages) == stats["events"]
    media = {json.loads(m.value())["media_id"] for m in messages}
    assert media <= {f"m{k}" for k in range(5)}  # responses to the served items only
