"""The Ray Serve application."""

import app  # noqa: F401  (switches dependencies' telemetry off before anything imports mlflow or ray)
