"""``feedray import`` reports unreadable datasets clearly, before touching Kafka."""

import typer
from typer.testing import CliRunner

from data.importers.run import import_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(import_command)
    return app


def test_unknown_format_and_missing_files_exit_with_a_message(tmp_path):
    runner = CliRunner()
    out = runner.invoke(_app(), ["netflix", str(tmp_path)])
    assert out.exit_code == 1 and "unknown format 'netflix'" in out.output
    out = runner.invoke(_app(), ["lastfm", str(tmp_path)])
    assert out.exit_code == 1 and "no user_artists.dat" in out.output
    (tmp_path / "log.csv").write_text("user,item\na,x\n")
    out = runner.invoke(_app(), ["table", str(tmp_path / "log.csv")])
    assert out.exit_code == 1 and "column 'user_id' not found" in out.output
