"""Typer commands for the lead to mount as ``feedray train retrieval|ranking|tune|index``:

from train.cli import app as train_app
cli.add_typer(train_app, name="train")
"""

import typer

from train import index, ranking, retrieval, tune

app = typer.Typer(
    help="Train, tune and index the models (Ray Train / Tune, MLflow, FAISS).", no_args_is_help=True
)
app.command("retrieval")(retrieval.command)
app.command("ranking")(ranking.command)
app.command("tune")(tune.command)
app.command("index")(index.command)
