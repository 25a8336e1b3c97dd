"""The ``simyard`` command line: parse arguments, call services or the client, print results."""

from __future__ import annotations

import typer

from simyard.cli import models, remote, server

app = typer.Typer(
    name="simyard",
    help="Turn a file-based scientific model into a multi-user web service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(server.serve)
app.add_typer(models.app, name="models")
app.command("login")(remote.login)
app.command("run")(remote.run)
app.add_typer(remote.runs_app, name="runs")
app.add_typer(server.users_app, name="users")
app.add_typer(server.tokens_app, name="tokens")
app.add_typer(server.db_app, name="db")


def main() -> None:
    """Entry point of the ``simyard`` console script."""
    app()
