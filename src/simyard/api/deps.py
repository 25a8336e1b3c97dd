"""What every router needs: the platform, a database session, the current user, error shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.orm import Session

from simyard.db.session import read_then_write
from simyard.domain.tables import User
from simyard.domain.users import VerifiedToken, token_for
from simyard.errors import Problem
from simyard.web.session import CSRF_HEADER, PASSWORD_PAGE, check_csrf, session_user
from simyard.wiring import Platform

SAFE = {"GET", "HEAD", "OPTIONS"}
T = TypeVar("T")
# Ids are INTEGER columns: 32 bits on PostgreSQL, which refuses a larger value with an
# error rather than finding nothing. Byte offsets are 64-bit, as the operating system's.
MAX_ID = 2**31 - 1
MAX_OFFSET = 2**63 - 1

# Every id, cursor and offset a client sends, in a path or a query: out of range is a 422
# naming the parameter, before it reaches a database or a seek that would overflow on it.
RowId = Annotated[int, Ge(1), Le(MAX_ID)]
Cursor = Annotated[int, Ge(0), Le(MAX_ID)]  # "after this id"; 0: from the start
ByteOffset = Annotated[int, Ge(0), Le(MAX_OFFSET)]


# The dependencies that do no I/O are coroutines: FastAPI runs a plain function in the
# thread pool, a round trip that cost the event loop more than the function itself.


async def refuse_nul_characters(request: Request) -> None:
    """A 422 naming the path or query parameter that holds a NUL character.

    No name, version or state holds one, and PostgreSQL refuses to compare text with one
    (an error, not "not found"): refused here once for every operation.
    """
    found = [("path", k, v) for k, v in request.path_params.items()]
    found += [("query", k, v) for k, v in request.query_params.multi_items()]
    bad = [(where, name) for where, name, value in found if "\x00" in str(value) + name]
    if bad:
        raise RequestValidationError(
            [
                {"loc": (where, name), "msg": "must not contain a NUL character", "type": "nul"}
                for where, name in bad
            ]
        )


def client_address(request: Request) -> str:
    """The client's address: the connecting one, or behind SIMYARD_TRUSTED_PROXIES the one
    they forwarded (uvicorn resolves it); "" when unknown."""
    return request.client.host if request.client else ""


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_db(request: Request, platform: PlatformDep) -> Iterator[Session]:
    """A session committed when the request handler returns normally (rolled back otherwise).

    A GET only reads: its session reads a snapshot and waits for no writer (on SQLite the
    writers queue, and readers must not queue behind them)."""
    factory = platform.readers if request.method in SAFE else platform.sessions
    with factory() as session:
        yield session
        session.commit()


# Ended when the handler returns, not once the answer is sent: a write transaction left
# open meanwhile (a lazy load after the handler's commit begins one) held SQLite's one
# writer while the answer went out, and under load the threads serving the next requests
# all waited for it (creates and cancels took 30 s, the writers benchmark).
DbDep = Annotated[Session, Depends(get_db, scope="function")]


async def reading(platform: Platform, read: Callable[[Session], T]) -> T:
    """``read`` in the thread pool with a reading session of its own, in one trip.

    For the answers read most often (a run, the runs list, a log): a plain handler with a
    session dependency takes four trips to the thread pool (the session's start, the
    handler, the check of its answer, the session's end), and each costs the event loop
    about as much as a small request. ``GET /runs/{id}``: 4.3 -> 3.2 ms of server CPU.
    """

    def in_session() -> T:
        with platform.readers() as db:
            return read(db)

    return await run_in_threadpool(in_session)


def json_answer(shaped: BaseModel | list[Any]) -> Response:
    """An answer already shaped by its response model, serialized as FastAPI would."""
    if isinstance(shaped, BaseModel):
        return Response(shaped.model_dump_json(by_alias=True), media_type="application/json")
    return Response(_ANY_LIST.dump_json(shaped, by_alias=True), media_type="application/json")


_ANY_LIST: TypeAdapter[list[Any]] = TypeAdapter(list[Any])


async def current_user(request: Request, platform: PlatformDep) -> User:
    """The user of the bearer token; 401 without a valid one.

    A token verified in the last second is known without the database; otherwise it is
    looked up in the thread pool, in a transaction of its own, so no database lock is
    held while the request handler works (SQLite allows one writer at a time).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""

    def identify(db: Session) -> VerifiedToken | User | None:
        if bearer:
            row = token_for(db=db, token=bearer)
            if row is None:
                return None
            platform.tokens.remember(bearer, row)
            return VerifiedToken(row.scope, row.user)
        found = session_user(request, db)
        if found is not None and request.method not in SAFE:
            # A browser session: a state-changing call must carry the page's CSRF token.
            check_csrf(request, request.headers.get(CSRF_HEADER))
        return found

    # Read from the database when not verified in the last second; a writer only when the
    # lookup notes a use (about once a minute per token or session).
    found: VerifiedToken | User | None = platform.tokens.lookup(bearer) if bearer else None
    if found is None:
        found = await run_in_threadpool(
            read_then_write, platform.readers, platform.sessions, identify
        )
    if isinstance(found, VerifiedToken):
        if found.scope == "read" and request.method not in SAFE:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail="this token may only read (scope 'read')"
            )
        user: User | None = found.user
    else:
        user = found
    if user is None:
        given = scheme.lower() == "bearer" and token
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=(
                "this API token is not valid (unknown, expired or revoked): log in again"
                " (simyard login)"
                if given
                else "log in first: an API token is required (simyard login)"
            ),
            headers={"WWW-Authenticate": "Bearer"},
        )
    if user.must_change_password:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"choose a new password first ({PASSWORD_PAGE})"
        )
    return user


UserDep = Annotated[User, Depends(current_user)]


async def admin_user(user: UserDep) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only an admin may do this")
    return user


AdminDep = Annotated[User, Depends(admin_user)]


def problems_response(
    problems: list[Problem], warnings: list[Problem] | None = None, status_code: int = 422
) -> JSONResponse:
    """The SPEC.md error shape: ``{"errors": [{"field", "message"}], "warnings": [...]}``."""
    return JSONResponse(
        status_code=status_code,
        content={"errors": problem_dicts(problems), "warnings": problem_dicts(warnings or [])},
    )


def problem_dicts(problems: list[Problem]) -> list[dict[str, str]]:
    """Problems as the answers show them: ``{"field", "message"}``, the file named first."""
    return [
        {"field": p.field, "message": f"{p.file}: {p.message}" if p.file else p.message}
        for p in problems
    ]
