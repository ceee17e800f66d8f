"""Simulator, Kafka ingestion and the cold-path pipelines."""

import app  # noqa: F401  (switches dependencies' telemetry off before anything imports mlflow or ray)
