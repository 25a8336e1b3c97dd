"""The ``simyard`` command line: parse arguments, call services or the client, print results."""

from __future__ import annotations

import typer

from simyard.cli import models

app = typer.Typer(
    name="simyard",
    help="Turn a file-based scientific model into a multi-user web service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")


def main() -> None:
    """Entry point of the ``simyard`` console script."""
    app()
