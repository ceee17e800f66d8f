"""Benchmarks that print and save JSON."""

import app  # noqa: F401  (switches dependencies' telemetry off before anything imports mlflow or ray)
