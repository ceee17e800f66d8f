"""``feedray train retrieval|ranking``: one Typer command shape for both training jobs.

Both commands take the same options; each option left unset keeps its value from
``settings.models`` (``epochs``, ``batch_size`` and ``lr`` override the model's own section,
``two_tower`` or ``ranker``; ``workers`` and ``cpus_per_worker`` override ``training``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from app.models.config import ModelSettings, resolve_model_settings

ModelSection = Literal["two_tower", "ranker"]


def model_settings_with(
    settings,
    section: ModelSection,
    *,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    workers: int | None,
    cpus_per_worker: float | None,
) -> ModelSettings:
    """``settings.models`` with the given (not None) values: epochs, batch size and learning
    rate in ``section``, Ray Train workers and CPUs per worker in ``training``."""
    model_settings = resolve_model_settings(settings)
    model = {"epochs": epochs, "batch_size": batch_size, "learning_rate": lr}
    training = {"num_workers": workers, "cpus_per_worker": cpus_per_worker}
    return model_settings.model_copy(
        update={
            section: getattr(model_settings, section).model_copy(update=_given(model)),
            "training": model_settings.training.model_copy(update=_given(training)),
        }
    )


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def training_command(
    job: Callable[[], Callable[..., Any]], section: ModelSection, default_run_name: str, doc: str
) -> Callable[..., None]:
    """The Typer command that runs ``job()`` (looked up at each call, so the job is the one
    its module holds then) on ``get_settings()`` with the options applied to ``section``."""

    def command(
        events: Annotated[
            str | None,
            typer.Option(help="Offline events store (default <state_dir>/offline/events)."),
        ] = None,
        catalogue: Annotated[
            str | None,
            typer.Option(help="Catalogue Parquet (default <state_dir>/offline/catalogue)."),
        ] = None,
        training_set: Annotated[
            str | None, typer.Option(help="A saved training set folder (skips building).")
        ] = None,
        epochs: Annotated[
            int | None, typer.Option(help="Epochs (resumes from the run's checkpoint).")
        ] = None,
        workers: Annotated[int | None, typer.Option(help="Ray Train workers.")] = None,
        cpus_per_worker: Annotated[float | None, typer.Option(help="CPUs per worker.")] = None,
        batch_size: Annotated[int | None, typer.Option()] = None,
        lr: Annotated[float | None, typer.Option()] = None,
        run_name: Annotated[
            str, typer.Option(help="Ray Train run name; rerun the same name to resume.")
        ] = default_run_name,
        no_register: Annotated[bool, typer.Option("--no-register")] = False,
    ) -> None:
        from app.config import get_settings

        settings = get_settings()
        model_settings = model_settings_with(
            settings,
            section,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
        )
        out = job()(
            settings,
            model_settings,
            events=events,
            catalogue=catalogue,
            training_set=training_set,
            run_name=run_name,
            register=not no_register,
        )
        typer.echo(f"done: {out.registered or 'not registered'}")

    command.__doc__ = doc
    return command
