"""Counting what a piece of code sends to the database: statements and commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def counted(
    sessions: sessionmaker[Session], commits: list[int] | None = None
) -> Iterator[list[str]]:
    """The statements sent to the database meanwhile; ``commits`` (a list) gets one entry
    per transaction committed."""
    sent: list[str] = []
    engine = sessions.kw["bind"]

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    def committed(_conn: Any) -> None:
        if commits is not None:
            commits.append(1)

    event.listen(engine, "before_cursor_execute", note)
    event.listen(engine, "commit", committed)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)
        event.remove(engine, "commit", committed)
