"""``python -m data.ingest``: the ``feedray ingest`` command."""

import typer

from data.ingest.command import ingest_command

typer.run(ingest_command)
