"""The access rule as a table: owners and admins may do anything to a run, readers only
read it, and someone with no standing is told nothing (the run's own 'not found')."""

from __future__ import annotations

import pytest

from simyard.domain.access import Action, ReadOnly, Role, Standing, require
from simyard.domain.runs import RunNotFound


@pytest.mark.parametrize("role", [Role.owner, Role.admin])
def test_owner_and_admin_may_do_everything(role: Role) -> None:
    assert all(Standing(role).may(action) for action in Action)


def test_a_reader_may_only_read() -> None:
    reader = Standing(Role.reader, "shared with you by alice")
    assert [a for a in Action if reader.may(a)] == [Action.read]


@pytest.mark.parametrize("action", [a for a in Action if a is not Action.read])
def test_a_reader_asking_for_more_is_told_it_is_read_only(action: Action) -> None:
    reader = Standing(Role.reader, "in project ocean")
    with pytest.raises(ReadOnly, match=r"^run 12 is in project ocean, read-only: only its owner"):
        require(reader, action, "run 12", RunNotFound("run 12 not found"))


@pytest.mark.parametrize("action", list(Action))
def test_no_standing_is_not_found_whatever_is_asked(action: Action) -> None:
    with pytest.raises(RunNotFound, match="run 12 not found"):
        require(Standing(None), action, "run 12", RunNotFound("run 12 not found"))
