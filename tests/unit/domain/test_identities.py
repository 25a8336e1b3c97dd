"""Single sign-on accounts: who an OpenID Connect provider's answer signs in, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.identities import (
    ProviderClaims,
    SignInRefused,
    sign_in_by_provider,
    unique_user_name,
)
from simyard.domain.tables import AuditEntry, ExternalIdentity, User
from simyard.domain.users import _NAME_RE, authenticate, create_user, set_disabled

ISSUER = "https://id.example.org"


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def claims(subject: str = "s-1", **extra: object) -> ProviderClaims:
    values = {"iss": ISSUER, "sub": subject, "email": "ana@example.org", "email_verified": True}
    return ProviderClaims.from_claims({**values, **extra}, groups_claim="groups")


def user_count(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(User)) or 0)


def test_a_new_person_gets_an_account_named_after_their_user_name(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        user = sign_in_by_provider(db=db, claims=claims(preferred_username="ana.s"))
        assert (user.name, user.email, user.password_hash, user.is_admin) == (
            "ana.s", "ana@example.org", None, False,
        )  # fmt: skip
    with sessions() as db:
        identity = db.scalars(select(ExternalIdentity)).one()
        assert (identity.issuer, identity.subject, identity.user.name) == (ISSUER, "s-1", "ana.s")
        assert identity.last_login_at is not None


def test_the_next_sign_in_finds_the_same_account_by_subject_even_with_a_new_email(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        first = sign_in_by_provider(db=db, claims=claims()).id
    with sessions() as db, db.begin():
        again = sign_in_by_provider(db=db, claims=claims(email="ana.new@example.org"))
        assert again.id == first
        assert again.email == "ana.new@example.org"  # the provider's verified address wins
        assert user_count(db) == 1


def test_a_local_user_with_the_verified_email_is_linked_not_duplicated(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        local = create_user(db=db, name="ana", email="Ana@Example.org", password="s3cret-pass")
        local_id = local.id
    with sessions() as db, db.begin():
        user = sign_in_by_provider(db=db, claims=claims(preferred_username="someone-else"))
        assert (user.id, user.name) == (local_id, "ana")
        assert user_count(db) == 1
    with sessions() as db:
        assert authenticate(db=db, name="ana", password="s3cret-pass") is not None  # kept
        assert db.scalars(select(ExternalIdentity)).one().user_id == local_id


def test_an_unverified_email_neither_links_nor_makes_an_account(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        create_user(db=db, name="ana", email="ana@example.org", password="s3cret-pass")
    with sessions() as db, pytest.raises(SignInRefused, match="email_verified"):
        sign_in_by_provider(db=db, claims=claims(email_verified=False))
    with sessions() as db:
        assert db.scalars(select(ExternalIdentity)).all() == []
        assert user_count(db) == 1


def test_without_user_creation_only_known_people_get_in(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, pytest.raises(SignInRefused, match="no account"):
        sign_in_by_provider(db=db, claims=claims(), create_users=False)
    with sessions() as db, db.begin():
        create_user(db=db, name="ana", email="ana@example.org", password=None)
    with sessions() as db, db.begin():
        assert sign_in_by_provider(db=db, claims=claims(), create_users=False).name == "ana"


def test_a_disabled_account_is_refused_by_subject_and_by_email(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        linked = sign_in_by_provider(db=db, claims=claims(subject="s-1"))
        set_disabled(db=db, user=linked, disabled=True)
        other = create_user(db=db, name="bo", email="bo@example.org", password=None)
        set_disabled(db=db, user=other, disabled=True)
    with sessions() as db, pytest.raises(SignInRefused, match="disabled"):
        sign_in_by_provider(db=db, claims=claims(subject="s-1"))
    with sessions() as db, pytest.raises(SignInRefused, match="disabled"):
        sign_in_by_provider(db=db, claims=claims(subject="s-2", email="bo@example.org"))
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(ExternalIdentity)) == 1


def test_an_email_already_linked_to_another_subject_of_the_provider_is_refused(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        sign_in_by_provider(db=db, claims=claims(subject="s-1"))
    with sessions() as db, pytest.raises(SignInRefused, match="another user"):
        sign_in_by_provider(db=db, claims=claims(subject="s-2"))


def test_the_admin_role_follows_the_group_claim_at_every_sign_in(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db, db.begin():
        user = sign_in_by_provider(db=db, claims=claims(groups=["staff", "simyard-admins"]),
                                   admin_group="simyard-admins")  # fmt: skip
        assert user.is_admin
    with sessions() as db, db.begin():
        user = sign_in_by_provider(db=db, claims=claims(groups=["staff"]),
                                   admin_group="simyard-admins")  # fmt: skip
        assert not user.is_admin
        user.is_admin = True
    with sessions() as db, db.begin():  # no admin group set: the role is the admins' to give
        assert sign_in_by_provider(db=db, claims=claims(groups=[])).is_admin


def test_user_names_are_made_valid_and_unique(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        create_user(db=db, name="Jose.Diaz", email="j@example.org", password=None)
        made = {
            "accents": unique_user_name(db=db, claims=claims(preferred_username="José.Díaz")),
            "spaces": unique_user_name(db=db, claims=claims(preferred_username=" .a b!c")),
            "email": unique_user_name(db=db, claims=claims(email="x.y+z@example.org")),
            "nothing": unique_user_name(db=db, claims=claims(preferred_username="@@@", email=None)),
            "long": unique_user_name(db=db, claims=claims(preferred_username="n" * 80)),
        }
        assert made == {
            "accents": "Jose.Diaz-2", "spaces": "a-b-c", "email": "x.y-z", "nothing": "user",
            "long": "n" * 64,
        }  # fmt: skip
        create_user(db=db, name="n" * 64, email="n@example.org", password=None)
        longer = unique_user_name(db=db, claims=claims(preferred_username="n" * 80))
        assert longer == "n" * 62 + "-2"
        assert all(_NAME_RE.match(name) for name in [*made.values(), longer])


def test_claims_are_read_leniently_where_providers_differ() -> None:
    read = ProviderClaims.from_claims(
        {"iss": ISSUER, "sub": "s", "email": " a@b.org ", "email_verified": "true", "roles": "ops"},
        groups_claim="roles",
    )
    assert (read.verified_email, read.groups) == ("a@b.org", ("ops",))
    unsure = {"iss": ISSUER, "sub": "s", "email": "a@b.org", "email_verified": "yes"}
    assert ProviderClaims.from_claims(unsure, groups_claim="g").verified_email is None
    with pytest.raises(SignInRefused, match="subject"):
        ProviderClaims.from_claims({"iss": ISSUER}, groups_claim="groups")


def test_sign_ins_and_refusals_go_to_the_audit_log(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        create_user(db=db, name="ana", email="ana@example.org", password=None)
    with sessions() as db, db.begin():
        ana = sign_in_by_provider(db=db, claims=claims(), client="10.0.0.7")
        set_disabled(db=db, user=ana, disabled=True)
    with sessions() as db, db.begin(), pytest.raises(SignInRefused):
        sign_in_by_provider(db=db, claims=claims(), client="10.0.0.7")
    with sessions() as db:
        entries = [
            (e.action, e.actor, e.account, e.client, e.detail.get("found_by"), e.detail["via"])
            for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action.startswith("login.")
        ]
    assert entries == [
        ("login.succeeded", "ana", "ana", "10.0.0.7", "email", "sso"),
        ("login.failed", "anonymous", "ana", "10.0.0.7", None, "sso"),
    ]
