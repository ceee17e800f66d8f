"""``feedray train retrieval|ranking|tune|index``: the training jobs as one Typer group, which
``app/cli.py`` mounts."""

import typer

from train import index, ranking, retrieval, tune

app = typer.Typer(
    help="Train, tune and index the models (Ray Train / Tune, MLflow, FAISS).", no_args_is_help=True
)
app.command("retrieval")(retrieval.command)
app.command("ranking")(ranking.command)
app.command("tune")(tune.command)
app.command("index")(index.command)
