"""The ingress replica's view of the running canary: arm assignment, the live guardrail,
the abort, and the per-arm counts it shares.

``CanaryArm`` holds the share and experiment of the Ingress ``user_config`` (``canary_share``,
``experiment``, ``canary_started_at``: the run's id). Every canary request's outcome goes to
``app.experiments.guardrail.CanaryGuard``; on a breach the replica sets its share to 0 at
once (its users go back to the champion), logs the structured record, counts it in
``feedray_canary_aborts_total`` and, off the request path, stores it in Redis (where every
other ingress replica reads it within ``sync_interval_s`` and ``feedray canary status``
shows it) and tags the challenger's MLflow versions with it. A replica (re)configured for an
aborted run stays at share 0 until ``feedray canary start`` begins a new run.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from app.experiments.assignment import Arm, assign_arm
from app.experiments.canary_store import CanaryStore
from app.experiments.guardrail import Breach, CanaryGuard, CanaryOutcome

log = logging.getLogger(__name__)

ABORT_TAG = "canary_abort"


class CanaryArm:
    def __init__(self, settings: Any, clock: Any, on_abort: Callable[[dict], None]) -> None:
        self.settings = settings
        self.clock = clock
        self.on_abort = on_abort
        self.share = 0.0  # effective: 0 after an abort
        self.configured_share = 0.0
        self.experiment = "default"
        self.run_id: str | None = None
        self.abort: dict | None = None
        self.guard = CanaryGuard(settings.experiments.canary)
        self.counts: Counter[str] = Counter()  # not yet published to Redis
        self.served: Counter[str] = Counter()  # since this replica started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        try:
            self.store: CanaryStore | None = CanaryStore.from_settings(settings, request_path=True)
        except Exception:
            log.exception("canary store unavailable")
            self.store = None
        threading.Thread(target=self._sync_loop, daemon=True, name="canary-sync").start()

    # ---------------------------------------------------------------- configuration
    def reconfigure(self, config: dict) -> None:
        """Apply the Ingress user_config; a new run (experiment or start time) starts afresh."""
        share = float(config.get("canary_share", 0.0))
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary_share must be in [0, 1], got {share}")
        experiment = str(config.get("experiment", "default"))
        run_id = config.get("canary_started_at")
        with self._lock:
            if (experiment, run_id) != (self.experiment, self.run_id):
                self.guard.reset(experiment)
                self.abort = None
            self.experiment, self.run_id = experiment, run_id
            self.configured_share = share
            self.share = 0.0 if self.abort else share
        if share > 0 and self.abort is None:
            self._read_shared_abort()

    def arm_of(self, user_id: str) -> Arm:
        return assign_arm(user_id, self.share, self.experiment)

    # ---------------------------------------------------------------- per request
    def served_by(self, arm: str) -> None:
        """Count one feed served to ``arm`` (the assigned arm)."""
        with self._lock:
            self.counts[f"requests:{arm}"] += 1
        self.served[arm] += 1

    def observe(self, failed: bool, latency_ms: float) -> None:
        """One canary request's outcome; aborts the canary on a guardrail breach."""
        if failed:
            with self._lock:
                self.counts["canary_failed"] += 1
            self.served["canary_failed"] += 1
        if self.share == 0.0:
            return
        self.guard.observe(CanaryOutcome(failed, latency_ms))
        breach = self.guard.check(self.clock.time())
        if breach is not None:
            self._abort(breach)

    # ---------------------------------------------------------------- abort
    def _abort(self, breach: Breach) -> None:
        with self._lock:
            if self.abort is not None:
                return
            self.share = 0.0
            self.abort = breach.record() | {"run_id": self.run_id}
        record = dict(self.abort)
        log.error("canary aborted: %s", json.dumps(record))
        self.on_abort(record)
        threading.Thread(target=self._publish_abort, args=(record,), daemon=True).start()

    def _publish_abort(self, record: dict) -> None:
        try:
            if self.store is not None and not self.store.record_abort(record):
                return  # another replica recorded this run's abort first
        except Exception:
            log.exception("canary abort not stored in Redis")
        try:
            from app import registry

            uri = registry.tracking_uri(self.settings)
            models = self.settings.models
            for name in (models.retrieval_model_name, models.ranking_model_name):
                version = registry.get_version(uri, name, registry.CHALLENGER)
                if version is not None:
                    registry.set_version_tag(
                        uri, name, version.version, ABORT_TAG, json.dumps(record)
                    )
        except Exception:
            log.exception("canary abort not recorded in MLflow")

    def _read_shared_abort(self) -> None:
        """Adopt an abort another replica stored for this run."""
        if self.store is None:
            return
        try:
            record = self.store.abort(self.experiment)
        except Exception:  # noqa: BLE001 - Redis down: this replica's own guard still runs
            return
        if record and record.get("run_id") == self.run_id:
            with self._lock:
                if self.abort is None:
                    self.abort, self.share = record, 0.0
                    log.error("canary aborted by another replica: %s", json.dumps(record))

    # ---------------------------------------------------------------- shared state
    def _sync_loop(self) -> None:
        every = self.settings.experiments.canary.sync_interval_s
        while not self._stop.wait(every):
            self.sync()

    def sync(self) -> None:
        """Publish the counts gathered since the last sync; read the shared abort."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        if self.store is None:
            return
        if counts:
            try:
                self.store.add_counts(self.experiment, dict(counts))
            except Exception:  # noqa: BLE001
                with self._lock:
                    self.counts.update(counts)  # kept for the next sync
        if self.share > 0:
            self._read_shared_abort()

    def report(self) -> dict:
        return {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "configured_share": self.configured_share,
            "effective_share": self.share,
            "abort": self.abort,
            "served": dict(self.served),
            "guard_window": len(self.guard.outcomes),
        }

    def close(self) -> None:
        self._stop.set()
