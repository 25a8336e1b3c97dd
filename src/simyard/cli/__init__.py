"""The ``simyard`` command line: parse arguments, call services or the client, print results."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from simyard.cli import models, remote, server
from simyard.errors import SimyardError

app = typer.Typer(
    name="simyard",
    help="Turn a file-based scientific model into a multi-user web service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"simyard {version('simyard')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Turn a file-based scientific model into a multi-user web service."""


app.command("serve")(server.serve)
app.add_typer(models.app, name="models")
app.command("login")(remote.login)
app.command("run")(remote.run)
app.command("sweep")(remote.sweep)
app.add_typer(remote.runs_app, name="runs")
app.add_typer(server.users_app, name="users")
app.add_typer(server.tokens_app, name="tokens")
app.add_typer(server.db_app, name="db")


def main() -> None:
    """Entry point of the ``simyard`` console script."""
    try:
        app()
    except (SimyardError, ValidationError) as exc:
        # Bad configuration or an unreachable backend: one clear line, not a traceback.
        message = (
            str(exc).replace("\n", "; ") if isinstance(exc, SimyardError) else _settings_error(exc)
        )
        Console(stderr=True, highlight=False).print(f"[red]✗[/red] {message}", soft_wrap=True)
        raise SystemExit(2) from None


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        name = "SIMYARD_" + "_".join(str(p) for p in error["loc"]).upper()
        parts.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(parts)
