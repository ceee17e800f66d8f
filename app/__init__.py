"""The platform's core. Importing it first switches off dependencies' telemetry (app.telemetry)."""

from app.telemetry import disable_telemetry

disable_telemetry()
