"""``simyard models ...``: check and test a model folder (and, with a server, register it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from simyard.errors import ManifestError
from simyard.manifest import load_manifest

app = typer.Typer(help="Check, test and register models.", no_args_is_help=True)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ModelDir = Annotated[
    Path, typer.Argument(help="The model folder (holding simyard.yaml).", show_default=False)
]


@app.command("check")
def check(model_dir: ModelDir) -> None:
    """Check a model's manifest; print every problem with its location (exit 1 on problems)."""
    try:
        manifest = load_manifest(model_dir)
    except ManifestError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]✗[/red] {problem}", soft_wrap=True)
        err_console.print(f"{len(exc.problems)} problem(s) in {model_dir}")
        raise typer.Exit(1) from None
    console.print(
        f"[green]✓[/green] {manifest.name} {manifest.version}: "
        f"{len(manifest.parameters)} parameters, {len(manifest.inputs)} inputs, "
        f"{len(manifest.tasks)} tasks ({' -> '.join(manifest.task_order())})",
        soft_wrap=True,
    )
