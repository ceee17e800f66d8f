"""Ray Train / Tune jobs (python -m train.<job>)."""

import app  # noqa: F401  (switches dependencies' telemetry off before anything imports mlflow or ray)
