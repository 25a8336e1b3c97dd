"""Client commands: ``login``, ``run``, ``runs ...``, ``models add|list`` against a server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from simyard.cli import waiting
from simyard.cli.models import parse_assignments
from simyard.cli.terminal import (
    model_text,
    refused_line,
    safe_chunks,
    terminal_safe,
    warning_line,
)
from simyard.client import Client, ClientError
from simyard.config import Settings
from simyard.engine.result import how_it_ended
from simyard.errors import ParameterFileError, ValidationFailed

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

runs_app = typer.Typer(help="Look at and act on runs.", no_args_is_help=True)

ServerOption = Annotated[
    str | None, typer.Option("--server", help="The server's URL (or SIMYARD_URL).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def show_metric(value: object) -> str:
    """A metric for people: ``(no value)`` when its file, key or match was not there."""
    return "(no value)" if value is None else str(value)


def client(server: str | None) -> Client:
    """A client for the server named by --server, SIMYARD_URL or the last login."""
    try:
        return Client.from_login(server)
    except ClientError as exc:
        err_console.print(refused_line(exc))
        raise typer.Exit(2) from None


def fail(exc: Exception, code: int = 1, *, as_json: bool = False) -> typer.Exit:
    """Print why a command was refused (stderr; with ``as_json`` also the problems as JSON
    on stdout, so a script reading stdout gets an answer) and the exit code to leave with."""
    if as_json:
        problems = exc.problems if isinstance(exc, ValidationFailed) else [exc]
        warnings = exc.warnings if isinstance(exc, ValidationFailed) else []
        print(json.dumps({"errors": [_as_dict(p) for p in problems],
                          "warnings": [_as_dict(w) for w in warnings]}))  # fmt: skip
    if isinstance(exc, ValidationFailed):
        for problem in exc.problems:
            err_console.print(refused_line(problem), soft_wrap=True)
        for warning in exc.warnings:
            err_console.print(warning_line(warning), soft_wrap=True)
        err_console.print(f"Refused: {len(exc.problems)} problem(s); no run was created.")
        return typer.Exit(2)
    err_console.print(refused_line(exc), soft_wrap=True)
    return typer.Exit(code)


def _as_dict(problem: object) -> dict[str, str]:
    field = getattr(problem, "field", "")
    message = getattr(problem, "message", None)
    return {"field": str(field), "message": str(message if message is not None else problem)}


def login(
    url: str,
    username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
    password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True)],
) -> None:
    """Log in to a server and store a token for the CLI."""
    settings = Settings()
    try:
        with Client(url) as api:
            token = api.login(username, password)
    except ClientError as exc:
        raise fail(_explain_url(url, exc)) from None
    path = settings.credentials_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url.rstrip("/"), "token": token}, handle)
    console.print(f"[green]✓[/green] logged in to {url} as {username}")


def _explain_url(url: str, exc: ClientError) -> ClientError:
    """A 404 from a URL with a path: the user gave a page's address, not the server's."""
    parts = urlsplit(url)
    if exc.status != 404 or parts.path.strip("/") == "":
        return exc
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return ClientError(
        f"no simyard server answers at {url}: give the server's address without the page's"
        f" path ({parts.path}), e.g. `simyard login {root}`; a server published under a path"
        f" answers at URL/api/v1/"
    )


def _print_run(run: dict[str, Any]) -> None:
    name = model_text(f"{run['model']} {run['version']}")
    console.print(
        Text.assemble(f"Run {run['id']}: ", name, " ", (str(run["state"]), "bold")),
        soft_wrap=True,
    )
    labels = [f"name: {run['name']}"] if run.get("name") else []
    labels += [f"tags: {', '.join(run['tags'])}"] if run.get("tags") else []
    if labels:
        console.print(model_text("  " + " · ".join(labels)), soft_wrap=True)
    if run.get("params"):
        console.print(
            model_text("  parameters: " + ", ".join(f"{k}={v}" for k, v in run["params"].items())),
            soft_wrap=True,
        )
    if run.get("waiting"):
        console.print(model_text(f"  queued: {run['waiting']}"), soft_wrap=True)
    for task in run["tasks"]:
        progress = f" {task['progress']:.0f}%" if task.get("progress") is not None else ""
        ended = how_it_ended(task.get("exit_code"), task.get("signal"))
        ended = f", {ended}" if ended and task["state"] != "succeeded" else ""
        console.print(model_text(f"  {task['name']}: {task['state']}{progress}{ended}"))
        for line in task.get("warnings") or []:
            console.print(model_text(f"    warning: {line}", style="yellow"), soft_wrap=True)
    if run.get("metrics"):
        for key, value in run["metrics"].items():
            console.print(model_text(f"  {key} = {show_metric(value)}"), soft_wrap=True)
    if run.get("error") and run["error"].get("summary"):
        console.print(model_text(run["error"]["summary"], style="red"), soft_wrap=True)


def wait_for(api: Client, run_id: int, *, follow: bool, quiet: bool) -> dict[str, Any]:
    """Wait for the run to end, showing its running tasks (and the live log with ``follow``)."""
    return waiting.wait_for(api, console, err_console, run_id, follow=follow, quiet=quiet)


def _announce(api: Client, created: dict[str, Any], what: str) -> None:
    """``Run 12 queued (toy 0.1): http://host/runs/12``, first, before any waiting."""
    err_console.print(
        model_text(f"Run {created['id']} queued ({what}): {api.url}/runs/{created['id']}"),
        soft_wrap=True,
    )


def run(
    model: Annotated[str, typer.Argument(help="MODEL or MODEL@VERSION.")],
    param: Annotated[list[str] | None, typer.Option("-p", "--param", help="NAME=VALUE")] = None,
    param_file: Annotated[Path | None, typer.Option("-P", "--param-file")] = None,
    input_: Annotated[list[str] | None, typer.Option("-i", "--input", help="SLOT=FILE")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Show the live log.")] = False,
    notify: Annotated[
        bool | None,
        typer.Option("--notify/--no-notify", help="Notify when it ends (default: your settings)."),
    ] = None,
    from_run: Annotated[
        int | None,
        typer.Option(
            "--from", help="Start from this run's parameters and inputs (-p, -i change some)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the run.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat for more).")] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Notes about the run.")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Start it in this project of yours.")
    ] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
) -> None:
    """Start a run on the server. With --wait: exit 0 succeeded, 1 failed, 2 refused."""
    try:
        params: dict[str, Any] = dict(parse_assignments(param or [], "NAME=VALUE"))
        inputs = {k: Path(v) for k, v in parse_assignments(input_ or [], "SLOT=FILE").items()}
    except typer.BadParameter as exc:
        raise fail(exc, 2, as_json=as_json) from None
    for slot, path in inputs.items():
        if not path.is_file():
            missing = ValidationFailed([_problem(f"inputs.{slot}", f"{path}: no such file")])
            raise fail(missing, as_json=as_json)
    with client(server) as api:
        if param_file is not None:
            params = {**_params_from_file(api, model, param_file), **params}
        try:
            created = api.create_run(
                model, params, inputs, notify=notify, name=name, notes=notes, tags=tag,
                from_run=from_run, project=project,
            )  # fmt: skip
        except (ValidationFailed, ClientError) as exc:
            raise fail(exc, as_json=as_json) from None
        for warning in created.get("warnings", []):
            err_console.print(warning_line(warning["field"], warning["message"]))
        if not (wait or follow):
            if as_json:
                print(json.dumps(created))
            else:
                console.print(
                    model_text(
                        f"Run {created['id']} queued ({created['model']} {created['version']}):"
                        f" {api.url}/runs/{created['id']}"
                    ),
                    soft_wrap=True,
                )
            return
        if not as_json:
            _announce(api, created, f"{created['model']} {created['version']}")
        final = wait_for(api, created["id"], follow=follow, quiet=as_json)
        final = api.get_run(created["id"])
    if as_json:
        print(json.dumps(final))
    else:
        _print_run(final)
    raise typer.Exit(0 if final["state"] == "succeeded" else 1)


def sweep(
    model: Annotated[str, typer.Argument(help="MODEL or MODEL@VERSION.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "-p", "--param", help="NAME=VALUE for every run, or NAME=V1,V2,... for an axis."
        ),
    ] = None,
    zip_: Annotated[
        bool, typer.Option("--zip", help="Pair the axes' values instead of every combination.")
    ] = False,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="A CSV whose header names parameters; one run per row."),
    ] = None,
    param_file: Annotated[Path | None, typer.Option("-P", "--param-file")] = None,
    input_: Annotated[list[str] | None, typer.Option("-i", "--input", help="SLOT=FILE")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for every run to end.")] = False,
    notify: Annotated[
        bool | None,
        typer.Option(
            "--notify/--no-notify", help="One summary when it ends (default: your settings)."
        ),
    ] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
) -> None:
    """Start a sweep: many runs from one base configuration and parameter axes.

    Every run is checked before any starts. With --wait: exit 0 if every run succeeded,
    1 if any did not, 2 refused.
    """
    try:
        assigned = parse_assignments(param or [], "NAME=VALUE or NAME=V1,V2,...")
        inputs = {k: Path(v) for k, v in parse_assignments(input_ or [], "SLOT=FILE").items()}
    except typer.BadParameter as exc:
        raise fail(exc, 2) from None
    axes = {k: v.split(",") for k, v in assigned.items() if "," in v}
    params: dict[str, Any] = {k: v for k, v in assigned.items() if k not in axes}
    for field, path in [(f"inputs.{s}", p) for s, p in inputs.items()] + [("table", table)]:
        if path is not None and not path.is_file():
            raise fail(ValidationFailed([_problem(field, f"{path}: no such file")]), 2)
    if not axes and table is None:
        raise fail(ValidationFailed([_problem("axes", "give NAME=V1,V2,... or --table FILE")]))
    with client(server) as api:
        if param_file is not None:
            params = {**_params_from_file(api, model, param_file), **params}
        try:
            created = api.create_sweep(
                model, params, axes, mode="zip" if zip_ else "grid", table=table,
                inputs=inputs, notify=notify,
            )  # fmt: skip
        except (ValidationFailed, ClientError) as exc:
            raise fail(exc) from None
        for warning in created.get("warnings", []):
            err_console.print(warning_line(warning["field"], warning["message"]))
        if not as_json:
            err_console.print(
                model_text(
                    f"Sweep {created['id']} queued: {len(created['runs'])} runs of "
                    f"{created['model']} {created['version']} ({created['mode']} over "
                    f"{', '.join(created['axes'])})"
                )
            )
        final = _wait_for_sweep(api, created["id"], quiet=as_json) if wait else created
    if as_json:
        print(json.dumps(final))
    else:
        _print_sweep(final)
    if wait:
        raise typer.Exit(0 if final["counts"] == {"succeeded": len(final["runs"])} else 1)


def _wait_for_sweep(api: Client, sweep_id: int, *, quiet: bool) -> dict[str, Any]:
    """Poll until every run of the sweep has ended, telling the counts when they change."""
    told: dict[str, int] = {}
    while True:
        found = api.get_sweep(sweep_id)
        if not quiet and found["counts"] != told:
            told = found["counts"]
            err_console.print("  " + ", ".join(f"{n} {s}" for s, n in sorted(told.items())))
        if found["state"] == "finished":
            return found
        time.sleep(0.5)


def _print_sweep(found: dict[str, Any]) -> None:
    axes = list(found["axes"])
    table = Table(title=model_text(f"Sweep {found['id']}: {found['model']} {found['version']}"))
    for column in ["run", *axes, "state", "metrics"]:
        table.add_column(model_text(column))
    for run in found["runs"]:
        metrics = ", ".join(f"{k}={show_metric(v)}" for k, v in (run["metrics"] or {}).items())
        error = (run.get("error") or {}).get("kind") or ""
        table.add_row(
            str(run["id"]), *(model_text(run["params"].get(a)) for a in axes),
            model_text(run["state"]), model_text(metrics or error),
        )  # fmt: skip
    console.print(table)


def _problem(field: str, message: str) -> Any:
    from simyard.errors import Problem

    return Problem(field, message)


def _params_from_file(api: Client, model: str, path: Path) -> dict[str, Any]:
    """Read a parameter file with the model's own format (fetched from the server)."""
    from simyard.manifest.paramfile import read_parameter_file
    from simyard.manifest.schema import Manifest

    name, _, version = model.partition("@")
    info = api.http.get(f"/models/{name}", params={"version": version} if version else None)
    if not info.is_success:
        raise fail(ClientError(f"no model {model!r}"))
    manifest_json = api.http.get(
        f"/models/{name}/manifest", params={"version": version} if version else None
    )
    if not manifest_json.is_success:
        raise fail(ClientError("cannot read the model's manifest"))
    manifest = Manifest.model_validate(manifest_json.json())
    try:
        values, unknown = read_parameter_file(manifest, path.read_bytes(), filename=path.name)
    except (OSError, ParameterFileError) as exc:
        raise fail(ValidationFailed([_problem("param_file", str(exc))])) from None
    for key in unknown:
        err_console.print(warning_line(path.name, f"{key} is not a parameter of {name}"))
    return dict(values)


@runs_app.command("list")
def runs_list(
    state: Annotated[str | None, typer.Option("--state")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    shared: Annotated[
        bool, typer.Option("--shared", help="The runs others shared with you instead.")
    ] = False,
    project: Annotated[
        str | None, typer.Option("--project", help="The runs of this project instead.")
    ] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
) -> None:
    """Your runs, newest first (all runs for an admin)."""
    with client(server) as api:
        try:
            runs = api.runs(state=state, model=model, shared=shared, project=project)
        except ClientError as exc:
            raise fail(exc) from None
    if as_json:
        print(json.dumps(runs))
        return
    table = Table("id", "model", "state", "created", "owner")
    for item in runs:
        table.add_row(
            str(item["id"]),
            model_text(f"{item['model']} {item['version']}"),
            model_text(item["state"]),
            model_text(item["created_at"][:19]),
            model_text(item["owner"]),
        )
    console.print(table)


@runs_app.command("share")
def runs_share(
    run_id: int,
    user: Annotated[str | None, typer.Argument(help="The user to share it with.")] = None,
    everyone: Annotated[
        bool, typer.Option("--everyone", help="Share it with every signed-in user.")
    ] = False,
    undo: Annotated[bool, typer.Option("--undo", help="Unshare it instead.")] = False,
    server: ServerOption = None,
) -> None:
    """Share a run of yours read-only with a user, or --everyone (--undo: unshare)."""
    if (user is None) == (not everyone):
        raise fail(ClientError("name a user, or give --everyone (not both)"))
    with client(server) as api:
        try:
            shares = api.share(run_id, user, everyone=everyone, undo=undo)
        except ClientError as exc:
            raise fail(exc) from None
    names = ["every signed-in user" if s["everyone"] else str(s["user"]) for s in shares]
    print(f"run {run_id} is shared read-only with: {', '.join(names)}" if names
          else f"run {run_id} is not shared")  # fmt: skip


@runs_app.command("show")
def runs_show(run_id: int, as_json: JsonOption = False, server: ServerOption = None) -> None:
    """One run: state, tasks, metrics, failure summary."""
    with client(server) as api:
        try:
            found = api.get_run(run_id)
        except ClientError as exc:
            raise fail(exc) from None
    if as_json:
        print(json.dumps(found))
    else:
        _print_run(found)


@runs_app.command("logs")
def runs_logs(
    run_id: int,
    task: Annotated[
        str | None, typer.Option("--task", help="The task (default: every task).")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new lines.")] = False,
    server: ServerOption = None,
) -> None:
    """A run's logs (one task's with --task)."""
    with client(server) as api:
        try:
            found = api.get_run(run_id)
            tasks = [t["name"] for t in found["tasks"] if task in (None, t["name"])]
            if not tasks:
                raise ClientError(f"run {run_id} has no task {task!r}")
            for name in tasks:
                if len(tasks) > 1:  # which task's log this is, as tail does for several files
                    console.print(Text(f"==> {name} <==", style="bold"))
                if follow:
                    for line in api.follow_log(run_id, name):
                        console.out(terminal_safe(line))
                    continue
                for text in safe_chunks(_log_chunks(api, run_id, name)):
                    console.out(text, end="")
        except ClientError as exc:
            raise fail(exc) from None


def _log_chunks(api: Client, run_id: int, task: str) -> Iterator[bytes]:
    offset = 0
    while True:
        data, offset = api.log(run_id, task, offset)
        if not data:
            return
        yield data


@runs_app.command("outputs")
def runs_outputs(
    run_id: int,
    outdir: Annotated[
        Path | None, typer.Option("-o", "--outdir", help="Download them here.")
    ] = None,
    server: ServerOption = None,
) -> None:
    """List a run's outputs, or download them into OUTDIR/<task>/."""
    with client(server) as api:
        try:
            files = api.outputs(run_id)
            for item in files:
                console.print(
                    model_text(f"{item['task']}/{item['path']}  {item['size']} bytes"),
                    soft_wrap=True,
                )
                if outdir is not None:
                    api.download_output(
                        run_id, item["task"], item["path"], outdir / item["task"] / item["path"]
                    )
        except ClientError as exc:
            raise fail(exc) from None


@runs_app.command("cancel")
def runs_cancel(run_id: int, server: ServerOption = None) -> None:
    """Cancel a run: its model processes are stopped."""
    with client(server) as api:
        try:
            found = api.cancel(run_id)
        except ClientError as exc:
            raise fail(exc) from None
    console.print(f"Run {found['id']}: cancel requested")


@runs_app.command("rerun")
def runs_rerun(
    run_id: int,
    from_failed: Annotated[
        bool, typer.Option("--from-failed", help="Reuse tasks that succeeded.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the new run to end.")] = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
) -> None:
    """Run again with the same model version, parameters and inputs.

    With --wait: exit 0 succeeded, 1 failed."""
    with client(server) as api:
        try:
            found = api.rerun(run_id, from_failed=from_failed)
        except ClientError as exc:
            raise fail(exc, as_json=as_json) from None
        if not wait:
            if as_json:
                print(json.dumps(found))
            else:
                console.print(
                    f"Run {found['id']} queued (rerun of {run_id}): {api.url}/runs/{found['id']}",
                    soft_wrap=True,
                    markup=False,
                )
            return
        if not as_json:
            _announce(api, found, f"rerun of {run_id}")
        wait_for(api, found["id"], follow=False, quiet=as_json)
        final = api.get_run(found["id"])
    if as_json:
        print(json.dumps(final))
    else:
        _print_run(final)
    raise typer.Exit(0 if final["state"] == "succeeded" else 1)
