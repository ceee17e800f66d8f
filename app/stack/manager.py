"""Bring the whole local stack up, report on it, take it down."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from app.config import FeedraySettings
from app.stack.component import Component, ComponentStatus, StackPaths
from app.stack.components import all_components
from app.stack.live import LiveService, live_services
from app.stack.process import StackError
from app.stack.settings import LIVE_SERVICE_NAMES

SERVER_NAMES = ("redis", "kafka", "ray", "mlflow")
OPTIONAL_SERVER_NAMES = ("prometheus",)  # started only when its settings enable it
COMPONENT_NAMES = (*SERVER_NAMES, *OPTIONAL_SERVER_NAMES, *LIVE_SERVICE_NAMES)
# Derived from the purged servers' data (the event stream, the registry), so a purge of the
# whole stack removes them too: a later run never mixes a new world with an old one.
DERIVED_DATA = ("offline", "training_sets", "ray_results", "bootstrap")


class Stack:
    """The servers, started concurrently (they do not depend on each other), then the
    live services of ``settings.stack.live_services`` in order; ``down`` stops the live
    services first. ``only`` names any of them (a live service named there runs even when
    the settings leave it out)."""

    def __init__(self, settings: FeedraySettings, only: list[str] | None = None) -> None:
        unknown = sorted(set(only or []) - set(COMPONENT_NAMES))
        if unknown:
            raise StackError(
                f"unknown component(s) {', '.join(unknown)}; "
                f"choose from {', '.join(COMPONENT_NAMES)}"
            )
        self.settings = settings
        self.paths = StackPaths.from_settings(settings)
        self.servers: list[Component] = [
            c for c in all_components(settings) if not only or c.name in only
        ]
        self.live: list[LiveService] = live_services(
            settings, [n for n in only if n in LIVE_SERVICE_NAMES] if only else None
        )
        self.components: list[Component] = [*self.servers, *self.live]

    def up(self) -> dict[str, str]:
        """Start what is not running; raise ``StackError`` listing every component that failed."""
        results: dict[str, str] = {}
        failures: list[str] = []
        if self.servers:
            with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
                futures = {c.name: pool.submit(c.up) for c in self.servers}
                for name, future in futures.items():
                    try:
                        results[name] = future.result()
                    except StackError as error:
                        failures.append(str(error))
                    except Exception as error:  # noqa: BLE001 - report every component's failure, not the first
                        failures.append(f"{name}: {type(error).__name__}: {error}")
        if failures:
            raise StackError("; ".join(failures))
        for service in self.live:  # they need the servers, so they start after them
            try:
                results[service.name] = service.up()
            except StackError as error:
                failures.append(str(error))
        if failures:
            raise StackError("; ".join(failures))
        return results

    def down(self, purge: bool = False) -> dict[str, str]:
        """Stop what ``up`` started (never anything else); ``purge`` also deletes the data."""
        results = {service.name: service.down() for service in reversed(self.live)}
        if self.servers:
            with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
                results |= dict(
                    zip(
                        [c.name for c in self.servers],
                        pool.map(lambda c: c.down(), self.servers),
                        strict=True,
                    )
                )
        if purge:
            for component in self.components:
                component.purge()
                results[component.name] += ", data purged"
            if set(SERVER_NAMES) <= {c.name for c in self.servers}:
                for name in ("data", *DERIVED_DATA):
                    shutil.rmtree(self.paths.root / name, ignore_errors=True)
        return results

    def status(self) -> list[ComponentStatus]:
        with ThreadPoolExecutor(max_workers=len(self.components)) as pool:
            return list(pool.map(lambda c: c.status(), self.components))

    def status_json(self) -> dict:
        statuses = self.status()
        return {
            "components": [asdict(s) for s in statuses],
            # a live service still waiting for its prerequisite (no world yet) does not count
            "all_up": all(
                s.state == "up" or s.detail.startswith("no simulated world") for s in statuses
            ),
            "state_dir": str(self.paths.root),
        }
