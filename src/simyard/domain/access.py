"""Who may do what to a run or a sweep: the one place that decides.

A user stands in one :class:`Role` towards a run: its owner, an admin, a reader (the run,
or its sweep, is shared with them or with every signed-in user, or it was started in a
project they are a member of), or none. :func:`may` answers from the role alone, so the
rule is a table: readers may look (page, logs, outputs, provenance, compare) and nothing
else. A user with no role is not told the run exists (404 at the edges); a reader asking
for more than reading is told it is read-only (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from simyard.domain.tables import Project, ProjectMember, Run, Share, Sweep, User
from simyard.errors import SimyardError


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    reader = "reader"


class Action(StrEnum):
    read = "read"  # the page, logs, outputs, provenance, compare
    cancel = "cancel"
    rerun = "rerun"  # a rerun, or a run edited from it (from_run)
    relabel = "relabel"  # name, notes, tags
    share = "share"  # share, unshare, list the shares


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.owner: frozenset(Action),
    Role.admin: frozenset(Action),
    Role.reader: frozenset({Action.read}),
}


class ReadOnly(SimyardError):
    """The user may read the run or sweep but not do this to it."""


@dataclass(frozen=True)
class Standing:
    """A user's role towards a run or sweep, and for a reader why they may read it."""

    role: Role | None
    reason: str = ""  # "shared with you by alice", "in project ocean", ...

    def may(self, action: Action) -> bool:
        """Whether a user of this standing may do ``action``."""
        return self.role is not None and action in ALLOWED[self.role]


WORDS = {
    Action.cancel: "cancel",
    Action.rerun: "rerun or edit and rerun",
    Action.relabel: "change the name, notes or tags of",
    Action.share: "share or unshare",
}


def require(standing: Standing, action: Action, what: str, hidden: SimyardError) -> None:
    """Return if the standing allows ``action`` on ``what`` ("run 12"); raise ``hidden``
    when the user may not even see it, ReadOnly when they may only read it."""
    if standing.role is None:
        raise hidden
    if not standing.may(action):
        raise ReadOnly(
            f"{what} is {standing.reason}, read-only: only its owner may {WORDS[action]} it"
        )


def _shared_with(user: User) -> ColumnElement[bool]:
    return or_(Share.user_id == user.id, Share.user_id.is_(None))


def readable_runs(user: User) -> ColumnElement[bool]:
    """A condition on ``Run``: runs ``user`` reads without owning them (shared with them,
    with everyone, through a shared sweep, or in one of their projects)."""
    return or_(
        Run.id.in_(select(Share.run_id).where(Share.run_id.is_not(None), _shared_with(user))),
        Run.sweep_id.in_(
            select(Share.sweep_id).where(Share.sweep_id.is_not(None), _shared_with(user))
        ),
        Run.project_id.in_(
            select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)
        ),
    )


def readable_sweeps(user: User) -> ColumnElement[bool]:
    """A condition on ``Sweep``: sweeps shared with ``user`` or with everyone."""
    return Sweep.id.in_(
        select(Share.sweep_id).where(Share.sweep_id.is_not(None), _shared_with(user))
    )


def _sharer(share: Share | None, owner: User) -> str:
    who = share.user_id if share is not None else None
    by = share.sharer.name if share is not None and share.sharer is not None else owner.name
    return f"shared with {'you' if who is not None else 'every signed-in user'} by {by}"


def _best_share(db: Session, user: User, condition: ColumnElement[bool]) -> Share | None:
    """A share meeting ``condition`` for ``user``: one naming them before one for everyone."""
    shares = db.scalars(select(Share).where(condition, _shared_with(user))).all()
    return min(shares, key=lambda s: (s.user_id is None, s.id), default=None)


def run_standing(db: Session, user: User, run: Run) -> Standing:
    """``user``'s standing towards ``run``."""
    if run.user_id == user.id:
        return Standing(Role.owner)
    if user.is_admin:
        return Standing(Role.admin)
    on_sweep = Share.sweep_id == run.sweep_id if run.sweep_id is not None else false()
    share = _best_share(db, user, or_(Share.run_id == run.id, on_sweep))
    if share is not None:
        return Standing(Role.reader, _sharer(share, run.user))
    if run.project_id is not None:
        member = db.get(ProjectMember, (run.project_id, user.id))
        if member is not None:
            project = db.get(Project, run.project_id)
            return Standing(Role.reader, f"in project {project.name if project else ''}")
    return Standing(None)


def sweep_standing(db: Session, user: User, sweep: Sweep) -> Standing:
    """``user``'s standing towards ``sweep``."""
    if sweep.user_id == user.id:
        return Standing(Role.owner)
    if user.is_admin:
        return Standing(Role.admin)
    share = _best_share(db, user, Share.sweep_id == sweep.id)
    if share is not None:
        return Standing(Role.reader, _sharer(share, sweep.user))
    return Standing(None)
