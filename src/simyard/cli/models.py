"""``simyard models ...``: check and test a model folder (and, with a server, register it)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from simyard.cli.terminal import model_text, refused_line, warning_line
from simyard.config import Settings
from simyard.errors import ManifestError, ParameterFileError, Problem, ValidationFailed

if TYPE_CHECKING:
    from simyard.manifest import Manifest
    from simyard.manifest.runinput import RunInput

# The manifest and engine modules are imported by the commands that use them, so that
# ``simyard run`` and the other client commands start without loading them.

app = typer.Typer(help="Check, test and register models.", no_args_is_help=True)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ModelDir = Annotated[
    Path, typer.Argument(help="The model folder (holding simyard.yaml).", show_default=False)
]


@app.command("check")
def check(model_dir: ModelDir) -> None:
    """Check a model's manifest; print every problem with its location (exit 1 on problems)."""
    from simyard.manifest import load_manifest

    try:
        manifest = load_manifest(model_dir)
    except ManifestError as exc:
        for problem in exc.problems:
            err_console.print(refused_line(problem), soft_wrap=True)
        err_console.print(model_text(f"{len(exc.problems)} problem(s) in {model_dir}"))
        raise typer.Exit(1) from None
    console.print(
        f"[green]✓[/green] {manifest.name} {manifest.version}: "
        f"{len(manifest.parameters)} parameters, {len(manifest.inputs)} inputs, "
        f"{len(manifest.tasks)} tasks ({' -> '.join(manifest.task_order())})",
        soft_wrap=True,
    )
    from simyard.engine.task import BASE_PATH, programs_not_found

    for field, program in programs_not_found(manifest):
        err_console.print(
            warning_line(
                field,
                f"{program!r} is not on this machine's PATH ({BASE_PATH} and Python's folder):"
                " install it, set PATH in env, or give its path in the model folder",
            ),
            soft_wrap=True,
        )


@app.command("init")
def init(model_dir: ModelDir) -> None:
    """Write a first simyard.yaml for a model folder: parameters from a parameter file it
    can read (namelist, JSON, YAML, name = value), a task running the folder's program."""
    from simyard.manifest.scaffold import propose_manifest

    target = model_dir / "simyard.yaml"
    if not model_dir.is_dir():
        err_console.print(model_text(f"{model_dir} is not a folder"))
        raise typer.Exit(2)
    if target.exists():
        err_console.print(model_text(f"{target} exists already; nothing written"))
        raise typer.Exit(1)
    text, source = propose_manifest(model_dir)
    target.write_text(text)
    where = f"parameters from {source}" if source else "no parameter file found"
    console.print(
        model_text(f"Wrote {target} ({where}). Edit it, then: simyard models check {model_dir}")
    )


def prepare_local_run(
    model_dir: Path,
    params: dict[str, str],
    inputs: dict[str, Path],
    param_file: Path | None,
    *,
    max_input_size: int,
    max_unpacked_size: int,
) -> tuple[Manifest, RunInput]:
    """Load the manifest and check the run's input; ``-p`` values override the ``-P`` file's."""
    from simyard.manifest import load_manifest
    from simyard.manifest.paramfile import read_parameter_file
    from simyard.manifest.runinput import validate_run_input

    manifest = load_manifest(model_dir)
    given: dict[str, object] = {}
    warnings: list[Problem] = []
    if param_file is not None:
        if manifest.parameter_file is None:
            raise ValidationFailed([Problem("param_file", "this model has no parameter file")])
        try:
            data = param_file.read_bytes()
            from_file, unknown = read_parameter_file(manifest, data, filename=param_file.name)
        except (OSError, ParameterFileError) as exc:
            raise ValidationFailed([Problem("param_file", str(exc))]) from None
        given.update(from_file)
        warnings += [
            Problem(f"param_file.{name}", f"{param_file.name}: not a parameter of this model")
            for name in unknown
        ]
    given.update(params)
    missing = [
        Problem(f"inputs.{slot}", f"{path}: no such file")
        for slot, path in inputs.items()
        if not path.is_file()
    ]
    if missing:
        raise ValidationFailed(missing)
    try:
        prepared = validate_run_input(
            manifest,
            model_dir,
            given,
            inputs,
            max_input_size=max_input_size,
            max_unpacked_size=max_unpacked_size,
        )
    except ValidationFailed as exc:
        raise ValidationFailed(exc.problems, warnings + exc.warnings) from None
    prepared.warnings = warnings + prepared.warnings
    return manifest, prepared


def parse_assignments(values: list[str], what: str) -> dict[str, str]:
    """``["days=30", "x=a=b"]`` -> ``{"days": "30", "x": "a=b"}``; BadParameter on a bad one."""
    parsed: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r}: write {what}")
        parsed[name.strip()] = value
    return parsed


@app.command("test")
def run_model_test(
    model_dir: ModelDir,
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="A parameter: NAME=VALUE.")
    ] = None,
    param_file: Annotated[
        Path | None,
        typer.Option("-P", "--param-file", help="Pre-fill parameters from a parameter file."),
    ] = None,
    input_: Annotated[
        list[str] | None, typer.Option("-i", "--input", help="An input file: SLOT=FILE.")
    ] = None,
    outdir: Annotated[
        Path | None, typer.Option("-o", "--outdir", help="Copy outputs here, one folder a task.")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the working directories even on success.")
    ] = False,
) -> None:
    """Validate inputs, then run the model's whole task graph on this machine.

    Exit 0 when the run succeeded, 1 when it failed, 2 when the input was refused.
    """
    from simyard.cli.display import TaskDisplay, report_local_run
    from simyard.localrun import run_locally

    settings = Settings()
    try:
        params = parse_assignments(param or [], "NAME=VALUE")
        inputs = {k: Path(v) for k, v in parse_assignments(input_ or [], "SLOT=FILE").items()}
    except typer.BadParameter as exc:
        err_console.print(refused_line(exc), soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        prepared = prepare_local_run(
            model_dir,
            params,
            inputs,
            param_file,
            max_input_size=settings.max_input_size,
            max_unpacked_size=settings.max_unpacked_size,
        )
    except (ManifestError, ValidationFailed) as exc:
        for problem in exc.problems:
            err_console.print(refused_line(problem), soft_wrap=True)
        for warning in exc.warnings:
            err_console.print(warning_line(warning), soft_wrap=True)
        err_console.print(f"Refused: {len(exc.problems)} problem(s); nothing was run.")
        raise typer.Exit(2) from None
    manifest, run_input = prepared
    for warning in run_input.warnings:
        console.print(warning_line(warning), soft_wrap=True)
    work_root = Path(tempfile.mkdtemp(prefix=f"simyard-{manifest.name}-"))
    with contextlib.ExitStack() as held:
        images = {}
        if manifest.environment.image or any(t.image for t in manifest.tasks.values()):
            from simyard.images.local import local_images

            try:
                images = held.enter_context(
                    local_images(
                        manifest, model_dir.resolve(),
                        cache_root=settings.home.resolve() / "cache" / "images",
                        max_layer_bytes=settings.image_max_layer_size,
                        max_cache_bytes=settings.image_cache_size,
                    )
                )  # fmt: skip
            except ManifestError as exc:
                for problem in exc.problems:
                    err_console.print(refused_line(problem), soft_wrap=True)
                err_console.print(f"Refused: {len(exc.problems)} problem(s); nothing was run.")
                raise typer.Exit(2) from None
        with TaskDisplay(console, manifest) as display:
            run = run_locally(
                manifest,
                model_dir.resolve(),
                params=run_input.params,
                inputs=run_input.inputs,
                work_root=work_root,
                options=settings.engine_options(),
                max_parallel=settings.max_parallel,
                on_change=display.update,
                images=images,
            )
    report_local_run(console, run, outdir)
    if run.succeeded and not keep:
        shutil.rmtree(work_root, ignore_errors=True)
    else:
        console.print(model_text(f"Working directories kept in {work_root}"), soft_wrap=True)
    raise typer.Exit(0 if run.succeeded else 1)


@app.command("add")
def add(
    model_dir: ModelDir,
    server: Annotated[str | None, typer.Option("--server", help="The server's URL.")] = None,
) -> None:
    """Register a model version on the server (admin only)."""
    from simyard.cli.remote import client, fail
    from simyard.client import ClientError
    from simyard.manifest import load_manifest

    try:
        load_manifest(model_dir)
    except ManifestError as exc:
        for problem in exc.problems:
            err_console.print(refused_line(problem), soft_wrap=True)
        raise typer.Exit(1) from None
    with client(server) as api:
        try:
            added = api.add_model(model_dir)
        except (ClientError, ValidationFailed) as exc:
            raise fail(exc) from None
    console.print(
        Text.assemble(
            ("✓", "green"), " ", model_text(f"{added['name']} {added['version']} registered")
        )
    )


@app.command("list")
def list_models(
    server: Annotated[str | None, typer.Option("--server", help="The server's URL.")] = None,
) -> None:
    """The models registered on the server."""
    from simyard.cli.remote import client, fail
    from simyard.client import ClientError

    with client(server) as api:
        try:
            found = api.models()
        except ClientError as exc:
            raise fail(exc) from None
    for item in found:
        image = item.get("image_digest")
        shown = f"  image {image[:19]}" if image else ""  # sha256: + 12 hex digits
        console.print(
            model_text(f"{item['name']} {item['version']}  {item['title']}{shown}"),
            soft_wrap=True,
        )
