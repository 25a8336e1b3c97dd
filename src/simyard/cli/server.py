"""Operator commands: ``serve``, ``db upgrade``, ``users add|passwd``, ``tokens ...``.

They act on the configured database directly and need no running server. What they
need of the server side is imported when they run, so that the client commands start fast.
"""

from __future__ import annotations

import gc
import secrets
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

import simyard
from simyard.config import Settings
from simyard.errors import ManifestError, ValidationFailed

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users (operator command).", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens (operator command).", no_args_is_help=True)


def examples_dir() -> Path:
    """The bundled example models: inside the installed package, or the source checkout's."""
    package = Path(simyard.__file__).parent
    for candidate in (package / "examples", package.parents[1] / "examples"):
        if candidate.is_dir():
            return candidate
    raise typer.BadParameter("the example models are not installed")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    from simyard.wiring import open_database

    settings = Settings()
    open_database(settings)
    console.print(f"[green]✓[/green] database schema is up to date ({_safe_url(settings)})")


def _safe_url(settings: Settings) -> str:
    url = settings.resolved_database_url
    scheme, sep, rest = url.partition("://")
    if "@" in rest:  # never print a password
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@users_app.command("add")
def users_add(
    name: str,
    email: Annotated[str, typer.Option("--email", help="The user's email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user (prompts for the password unless --password-stdin)."""
    password = _read_password(password_stdin)
    from simyard.domain.audit import OPERATOR, AuditAction, record
    from simyard.domain.users import UserExists, create_user
    from simyard.wiring import open_database

    database = open_database(Settings())
    try:
        with database.sessions() as db, db.begin():
            added = create_user(db=db, name=name, email=email, password=password, is_admin=admin)
            record(
                db=db, actor=OPERATOR, action=AuditAction.user_added, account=added.name,
                target=f"user {added.name}", detail={"email": added.email, "admin": admin},
            )  # fmt: skip
    except ValidationFailed as exc:
        raise _refused(exc) from None
    except UserExists as exc:
        err_console.print(f"[red]✗[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]✓[/green] user {name} added" + (" (admin)" if admin else ""))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _existing_user(db: Any, name: str) -> Any:
    """The user NAME; exit 1 saying so when there is none."""
    from simyard.domain.users import get_user

    user = get_user(db=db, name=name)
    if user is None:
        err_console.print(f"[red]✗[/red] no user {name!r}")
        raise typer.Exit(1)
    return user


def _refused(exc: ValidationFailed) -> typer.Exit:
    for problem in exc.problems:
        err_console.print("[red]✗[/red]", Text(str(problem)))
    return typer.Exit(2)


@users_app.command("passwd")
def users_passwd(
    name: str,
    temporary: Annotated[
        bool, typer.Option("--temporary", help="The user must change it at the next login.")
    ] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set user NAME's password; every session of theirs ends."""
    password = _read_password(password_stdin)
    from simyard.domain.audit import OPERATOR, AuditAction, record
    from simyard.domain.users import set_password
    from simyard.wiring import open_database

    database = open_database(Settings())
    try:
        with database.sessions() as db, db.begin():
            user = _existing_user(db, name)
            set_password(db=db, user=user, password=password, temporary=temporary)
            record(
                db=db, actor=OPERATOR, action=AuditAction.password_set, account=user.name,
                target=f"user {user.name}", detail={"temporary": temporary},
            )  # fmt: skip
    except ValidationFailed as exc:
        raise _refused(exc) from None
    note = " (temporary: to be changed at the next login)" if temporary else ""
    console.print(f"[green]✓[/green] password of {name} set{note}; their sessions ended")


@tokens_app.command("create")
def tokens_create(
    name: str,
    scope: Annotated[
        str, typer.Option("--scope", help="run: the user's full rights; read: GET requests only.")
    ] = "run",
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="Days until the token stops working.")
    ] = None,
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "operator",
) -> None:
    """Print a new API token for user NAME."""
    import datetime as dt

    from simyard.domain.audit import OPERATOR, AuditAction, record
    from simyard.domain.tables import utcnow
    from simyard.domain.users import create_token
    from simyard.wiring import open_database

    expires = None if expires_in is None else utcnow() + dt.timedelta(days=expires_in)
    database = open_database(Settings())
    try:
        with database.sessions() as db, db.begin():
            user = _existing_user(db, name)
            token = create_token(db=db, user=user, name=label, scope=scope, expires_at=expires)
            record(
                db=db, actor=OPERATOR, action=AuditAction.token_created, account=user.name,
                target=f"token {label!r}",
                detail={"label": label, "scope": scope,
                        "expires_at": expires.isoformat() if expires else None},
            )  # fmt: skip
    except ValidationFailed as exc:
        raise _refused(exc) from None
    print(token)


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
) -> None:
    """List API tokens: id, user, label, scope, created, last used, expiry (never the token)."""
    from rich.table import Table

    from simyard.domain.users import get_user, list_tokens
    from simyard.wiring import open_database

    database = open_database(Settings())
    table = Table("id", "user", "label", "scope", "starts", "created", "last used", "expires")
    with database.sessions() as db:
        owner = None
        if user is not None and (owner := get_user(db=db, name=user)) is None:
            err_console.print(f"[red]✗[/red] no user {user!r}")
            raise typer.Exit(1)
        for row in list_tokens(db=db, user=owner):
            table.add_row(
                str(row.id), row.user.name, Text(row.name), row.scope, row.prefix + "…",
                _when(row.created_at), _when(row.last_used_at), _when(row.expires_at) or "never",
            )  # fmt: skip
    console.print(table)


def _when(moment: Any) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


@tokens_app.command("revoke")
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (see tokens list); it stops working at once."""
    from simyard.domain.audit import OPERATOR, AuditAction, record
    from simyard.domain.users import revoke_token
    from simyard.wiring import open_database

    database = open_database(Settings())
    with database.sessions() as db, db.begin():
        row = revoke_token(db=db, token_id=token_id, by=None)
        if row is None:
            err_console.print(f"[red]✗[/red] no token {token_id}")
            raise typer.Exit(1)
        owner = row.user.name
        record(
            db=db, actor=OPERATOR, action=AuditAction.token_revoked, account=owner,
            target=f"token {token_id} {row.name!r}",
        )  # fmt: skip
    console.print(f"[green]✓[/green] token {token_id} of {owner} revoked")


def prepare_demo(settings: Settings) -> str | None:
    """Register the example models and make the demo admin; the admin's new password, or
    None when the demo was set up before (the password printed then still holds)."""
    from simyard.domain.audit import OPERATOR, AuditAction, record
    from simyard.domain.registry import register_model
    from simyard.domain.users import create_user, get_user
    from simyard.storage.registry import open_store
    from simyard.wiring import open_database

    database = open_database(settings)
    password: str | None = secrets.token_urlsafe(12)

    store = open_store(settings.resolved_storage_url, endpoint_url=settings.s3_endpoint_url)
    with database.sessions() as db, db.begin():
        admin = get_user(db=db, name="admin")
        if admin is None:
            admin = create_user(
                db=db, name="admin", email="admin@example.org", password=password, is_admin=True
            )
        else:
            password = None
        for folder in sorted(p for p in examples_dir().iterdir() if (p / "simyard.yaml").is_file()):
            try:
                version, created = register_model(db=db, store=store, model_dir=folder, user=admin)
            except ManifestError as exc:
                builder = folder / "build-image.sh"
                if builder.is_file() and "image" in str(exc):  # its image is made on demand
                    console.print(
                        f"  skipped {folder.name}: its image is not built yet ({builder})",
                        markup=False, soft_wrap=True,
                    )  # fmt: skip
                else:
                    err_console.print(f"[red]✗[/red] example {folder.name}: {exc}")
                continue
            if created:
                record(
                    db=db, actor=OPERATOR, action=AuditAction.model_registered,
                    target=f"model {version.name} {version.version}",
                    detail={"model": version.name, "version": version.version,
                            "content_hash": version.content_hash, "via": "serve --demo"},
                )  # fmt: skip
                console.print(f"  registered {version.name} {version.version}")
    return password


def _check_port_free(host: str, port: int) -> None:
    """Refuse, before anything is set up or printed, a port another program listens on."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        err_console.print(
            f"[red]✗[/red] cannot listen on {host}:{port}: {exc.strerror or exc} (another"
            f" server?); choose another port with --port, e.g. --port {port + 1}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Set up the example models and an admin account.")
    ] = False,
) -> None:
    """Serve the HTTP API and run the models (embedded dispatcher and executor)."""
    import uvicorn

    from simyard.api.app import create_app
    from simyard.wiring import build_platform

    settings = Settings()
    settings.check_models_cannot_see_data()
    url = f"http://{host}:{port}"
    _check_port_free(host, port)
    if demo:
        console.print(f"Setting up the demo in {settings.home.resolve()} ...")
        password = prepare_demo(settings)
        login = (
            f"with password [bold]{password}[/bold]"
            if password
            else "with the password printed when this demo was set up"
            " (a new one: simyard users passwd admin)"
        )
        console.print(
            f"\n[bold]simyard is running at {url}[/bold]  (API docs: {url}/docs)\n"
            f"Open it in a browser and log in as [bold]admin[/bold] {login}\n"
            f"From another terminal:  simyard login {url}   then   "
            "simyard run lake-heat --wait\n",
            soft_wrap=True,
        )
    else:
        console.print(f"simyard is serving at {url}  (data: {settings.home.resolve()})")
    app = create_app(build_platform(settings))
    # What start-up built (the modules, the app, the platform) lives as long as the server:
    # collections need not walk it again. A full one, which holds every request, walked
    # 160,000 objects in 58-67 ms on a 2-core VM; 40,000 in 11-22 ms once they were frozen.
    gc.collect()
    gc.freeze()
    # The client's address is the connecting one unless it is a trusted proxy (docs/security.md).
    proxies = settings.trusted_proxies.strip()
    uvicorn.run(
        app, host=host, port=port, log_level="warning",
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
    )  # fmt: skip
