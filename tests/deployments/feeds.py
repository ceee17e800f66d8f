"""Feed-request helpers of the canary tests on the module's feed service (not a test module):
model references, one pass of feed requests, in-place stage changes and a threaded load."""

from __future__ import annotations

import threading
import time

USERS = [f"u{i}" for i in range(600)]


def ref(serving, stage: str, version: int | str) -> str:
    """``name@version`` of the registered model behind ``stage`` (retrieval / ranking)."""
    ms = serving.settings.models
    name = ms.retrieval_model_name if stage == "retrieval" else ms.ranking_model_name
    return f"{name}@{version}"


def request_feed(serving, user: str, limit: int = 5) -> tuple[int, dict]:
    """(status, body) of one feed request; body {} unless 200."""
    r = serving.get("/api/v1/content/feed", user_id=user, limit=limit)
    return r.status_code, r.json() if r.status_code == 200 else {}


def feeds_of(serving, users) -> list[tuple[str, int, dict]]:
    """(user, status, body) of one feed request per user, in order."""
    return [(user, *request_feed(serving, user)) for user in users]


def set_stage(name: str, **user_config) -> None:
    """Change one stage deployment's user_config in the live config, in place, and wait."""
    from deployments.canary import live_config, stage_config
    from deployments.deploy import deploy

    config = live_config()
    stage_config(config, name).update(user_config)
    deploy(config, wait_s=180)


class Load:
    """``threads`` clients requesting feeds in a loop; every (status, body) is kept."""

    def __init__(self, serving, threads: int = 3) -> None:
        self.serving, self.threads = serving, threads
        self.results: list[tuple[int, dict]] = []
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, offset: int) -> None:
        k = offset
        while not self.stop.is_set():
            try:
                self.results.append(request_feed(self.serving, USERS[k % len(USERS)]))
            except Exception as error:  # noqa: BLE001 - a refused connection is a failure too
                self.results.append((0, {"error": repr(error)}))
            k += self.threads

    def __enter__(self) -> Load:
        for worker in self.workers:
            worker.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.0)
        self.stop.set()
        for worker in self.workers:
            worker.join()
