"""Accounts of people who sign in through an OpenID Connect provider (single sign-on).

The provider's answer, already checked by the OIDC client (signature, issuer, audience,
nonce), comes in as :class:`ProviderClaims`; :func:`sign_in_by_provider` finds the simyard
account it belongs to, in this order:

1. the account linked to (issuer, subject): the link holds for good, whatever the email
   or user name become;
2. else the one account with that email, when the provider vouches for the address
   (``email_verified``): the identity is linked to it, so a local user keeps their runs;
3. else a new account (when the server creates users), named after ``preferred_username``
   or the email's local part, made valid and unique.

A disabled account is refused whichever way it was found. With an admin group set, the
admin role follows the provider's groups claim at every sign-in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simyard.domain.audit import ANONYMOUS, AuditAction, record
from simyard.domain.tables import ExternalIdentity, User, utcnow
from simyard.domain.users import create_user, get_user
from simyard.errors import SimyardError

MAX_NAME = 64  # users.name: see domain/users.py for the characters allowed
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class SignInRefused(SimyardError):
    """The provider vouched for someone simyard will not let in; the message says why."""

    def __init__(self, message: str, *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account  # the simyard account concerned, when there is one


@dataclass(frozen=True)
class ProviderClaims:
    """What the provider says about the person signing in (ID token and userinfo)."""

    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    preferred_username: str | None = None
    groups: tuple[str, ...] = ()

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, groups_claim: str) -> ProviderClaims:
        """Read the standard claims (and the groups claim named by the server's settings)."""
        issuer, subject = claims.get("iss"), claims.get("sub")
        if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
            raise SignInRefused("the identity provider's answer has no issuer or subject")
        email = claims.get("email")
        username = claims.get("preferred_username")
        # Some providers send the flag as the string "true"; anything else is not a yes.
        verified = claims.get("email_verified") in (True, "true")
        groups = claims.get(groups_claim)
        if isinstance(groups, str):
            groups = [groups]
        return cls(
            issuer=issuer,
            subject=subject,
            email=email.strip() if isinstance(email, str) and email.strip() else None,
            email_verified=verified,
            preferred_username=username if isinstance(username, str) else None,
            groups=tuple(g for g in groups if isinstance(g, str))
            if isinstance(groups, list)
            else (),
        )

    @property
    def verified_email(self) -> str | None:
        """The email address, only when the provider vouches that it is the user's."""
        return self.email if self.email_verified else None


def sign_in_by_provider(
    *,
    db: Session,
    claims: ProviderClaims,
    create_users: bool = True,
    admin_group: str | None = None,
    client: str = "",
) -> User:
    """The account ``claims`` belong to (linked or created as needed); SignInRefused if none
    may sign in. Both go to the audit log (a refusal too: commit after catching it); the
    entry says how the account was found (subject, email or created). Flushes only."""
    try:
        user, found_by = _find_account(db=db, claims=claims, create_users=create_users)
    except SignInRefused as exc:
        record(
            db=db, actor=ANONYMOUS, action=AuditAction.login_failed, account=exc.account,
            client=client, detail={"reason": str(exc), "via": "sso", "issuer": claims.issuer},
        )  # fmt: skip
        raise
    identity = _identity(db=db, claims=claims)
    if identity is None:
        identity = ExternalIdentity(user_id=user.id, issuer=claims.issuer, subject=claims.subject)
        db.add(identity)
    identity.last_login_at = utcnow()
    if claims.verified_email and len(claims.verified_email) <= 254:
        user.email = claims.verified_email
    if admin_group:
        user.is_admin = admin_group in claims.groups
    record(
        db=db, actor=user.name, action=AuditAction.login_succeeded, account=user.name,
        client=client, detail={"via": "sso", "issuer": claims.issuer, "found_by": found_by,
                               "admin": user.is_admin},
    )  # fmt: skip
    return user


def _identity(*, db: Session, claims: ProviderClaims) -> ExternalIdentity | None:
    return db.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == claims.issuer, ExternalIdentity.subject == claims.subject
        )
    )


def _find_account(*, db: Session, claims: ProviderClaims, create_users: bool) -> tuple[User, str]:
    """The account and how it was found; SignInRefused (before any change) if none may."""
    identity = _identity(db=db, claims=claims)
    if identity is not None:
        user, found_by = identity.user, "subject"
    elif (by_email := _account_by_email(db=db, claims=claims)) is not None:
        user, found_by = by_email, "email"
    else:
        user, found_by = _new_account(db=db, claims=claims, create_users=create_users), "created"
    if user.disabled:
        raise SignInRefused("this account is disabled; ask an admin", account=user.name)
    return user, found_by


def _account_by_email(*, db: Session, claims: ProviderClaims) -> User | None:
    """The one account with the verified email address, if it has no other identity there."""
    email = claims.verified_email
    if email is None:
        return None
    found = list(db.scalars(select(User).where(func.lower(User.email) == email.lower()).limit(2)))
    if not found:
        return None
    if len(found) > 1:
        raise SignInRefused(
            f"several accounts have the email address {email}; ask an admin to tell them apart"
        )
    user = found[0]
    other = db.scalar(
        select(ExternalIdentity.id).where(
            ExternalIdentity.user_id == user.id, ExternalIdentity.issuer == claims.issuer
        )
    )
    if other is not None:
        raise SignInRefused(
            f"the account with the email address {email} belongs to another user of the "
            "identity provider"
        )
    return user


def _new_account(*, db: Session, claims: ProviderClaims, create_users: bool) -> User:
    if not create_users:
        raise SignInRefused("you have no account on this server; ask an admin to add you")
    if claims.verified_email is None:
        raise SignInRefused(
            "the identity provider did not vouch for an email address (email_verified), "
            "so no account can be made for you; ask an admin"
        )
    return create_user(
        db=db, name=unique_user_name(db=db, claims=claims), email=claims.verified_email,
        password=None,
    )  # fmt: skip


def unique_user_name(*, db: Session, claims: ProviderClaims) -> str:
    """A free, valid user name from preferred_username or the email's local part
    (``José.Díaz@x`` -> ``Jose.Diaz``; taken -> ``Jose.Diaz-2``)."""
    wanted = [claims.preferred_username, (claims.email or "").partition("@")[0]]
    base = next((name for name in map(_as_user_name, wanted) if name), "user")
    candidate, number = base, 2
    while get_user(db=db, name=candidate) is not None:
        suffix = f"-{number}"
        candidate = base[: MAX_NAME - len(suffix)] + suffix
        number += 1
    return candidate


def _as_user_name(text: str | None) -> str:
    """``text`` as a user name (letters, digits, '.', '_', '-'; a letter or digit first)."""
    if not text:
        return ""
    text = text.partition("@")[0]  # some providers give an email as the user name
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_IN_NAME.sub("-", ascii_text).lstrip("._-")[:MAX_NAME]
