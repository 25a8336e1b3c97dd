"""Single sign-on with OpenID Connect: ``/login/sso`` sends the browser to the identity
provider, ``/login/sso/callback`` takes its answer, finds the person's account
(domain/identities.py) and opens a session as the password login does.

Authlib (``pip install 'simyard[sso]'``) speaks the protocol: discovery from
SIMYARD_OIDC_ISSUER, the authorization code flow with PKCE, state and nonce checked, the ID
token's signature, issuer, audience and expiry verified. Both steps are plain GET
navigations, so the login page's form-action 'self' never meets the provider's address.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from simyard.api.deps import client_address
from simyard.domain.identities import ProviderClaims, SignInRefused, sign_in_by_provider
from simyard.errors import SimyardError, ValidationFailed
from simyard.web.pages.auth import safe_next
from simyard.web.pages.common import PageWriterDb
from simyard.web.session import log_in
from simyard.web.templating import render

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from simyard.config import Settings

START = "/login/sso"
CALLBACK = "/login/sso/callback"
_NEXT_KEY = "sso_next"  # where to go after the provider's round trip, in the signed cookie

router = APIRouter()


def mount_sso(app: FastAPI, settings: Settings) -> None:
    """Add the SSO pages; with SIMYARD_OIDC_ISSUER set, check the settings and make the
    client now, so a server with a broken setup does not start."""
    app.include_router(router, include_in_schema=False)
    app.state.sso_client = make_client(settings) if settings.oidc_issuer else None


def make_client(settings: Settings) -> Any:
    """Authlib's client for the provider (it reads the discovery document on first use)."""
    issuer, client_id, secret = (
        settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret
    )  # fmt: skip
    if not issuer or not client_id or secret is None:
        missing = [name for name, value in (("SIMYARD_OIDC_CLIENT_ID", client_id),
                   ("SIMYARD_OIDC_CLIENT_SECRET", secret)) if not value]  # fmt: skip
        raise SimyardError(f"single sign-on (SIMYARD_OIDC_ISSUER) needs {' and '.join(missing)}")
    if "openid" not in settings.oidc_scopes.split():
        raise SimyardError("SIMYARD_OIDC_SCOPES must include openid")
    try:
        import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401 - its filter first

        with warnings.catch_warnings():
            # Authlib 1.9 would rather drive httpx2; it still drives httpx, which simyard uses.
            warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
            from authlib.integrations.starlette_client import OAuth  # type: ignore[import-untyped]
    except ImportError:
        raise SimyardError("single sign-on needs Authlib: pip install 'simyard[sso]'") from None
    issuer = issuer.rstrip("/")
    return OAuth().register(
        "oidc",
        client_id=client_id,
        client_secret=secret.get_secret_value(),
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256",
                       "timeout": 15},
    )  # fmt: skip


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.platform.settings
    return settings


def _client(request: Request) -> Any:
    client = getattr(request.app.state, "sso_client", None)
    if client is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="single sign-on is not set up here")
    return client


def _protocol_errors() -> tuple[type[Exception], ...]:
    """What Authlib raises for a refused or forged answer (state, token, signature, claims)."""
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
    from joserfc.errors import JoseError

    return (AuthlibBaseError, JoseError)


def _refused(request: Request, status_code: int, message: str) -> Response:
    return render(request, "login.html", None, status_code=status_code, next="/", error=message)


@router.get(START)
async def start_sign_in(request: Request, next: str = "/") -> Response:
    """Send the browser to the provider's login (state, nonce and PKCE kept in the session)."""
    client = _client(request)
    request.session[_NEXT_KEY] = safe_next(next)
    redirect_uri = _settings(request).base_url.rstrip("/") + CALLBACK
    unreachable: tuple[type[Exception], ...] = (httpx.HTTPError, *_protocol_errors())
    try:
        response: Response = await client.authorize_redirect(request, redirect_uri)
    except unreachable:
        return _refused(request, 502, "The identity provider cannot be reached; try again later.")
    return response


@router.get(CALLBACK)
async def finish_sign_in(request: Request, db: PageWriterDb) -> Response:
    """The provider's answer: check it, sign the person in, go where they were heading."""
    client = _client(request)
    target = request.session.pop(_NEXT_KEY, "/")
    try:
        claims = await _verified_claims(client, request)
    except httpx.HTTPError:
        return _refused(request, 502, "The identity provider cannot be reached; try again later.")
    except _protocol_errors() as exc:
        reason = getattr(exc, "description", None) or getattr(exc, "error", None) or str(exc)
        return _refused(request, 401, f"Single sign-on failed: {reason}")
    settings = _settings(request)
    try:
        found = ProviderClaims.from_claims(claims, groups_claim=settings.oidc_groups_claim)
        await run_in_threadpool(_open_session, request, db, found, settings)
    except SignInRefused as exc:
        return _refused(request, 403, f"Single sign-on refused: {exc}.")
    except ValidationFailed as exc:
        return _refused(request, 403, f"No account can be made for you: {exc}.")
    return RedirectResponse(safe_next(str(target)), status_code=303)


async def _verified_claims(client: Any, request: Request) -> dict[str, Any]:
    """The ID token's claims (Authlib checked state, nonce and signature) with the
    userinfo endpoint's (email, groups, ... which many providers keep out of the ID token)."""
    token = await client.authorize_access_token(request)
    id_claims = dict(token.get("userinfo") or {})
    if not id_claims:
        from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]

        raise OAuthError(description="the provider sent no ID token")
    metadata = await client.load_server_metadata()
    if not metadata.get("userinfo_endpoint"):
        return id_claims
    extra = dict(await client.userinfo(token=token))
    if extra.get("sub") != id_claims.get("sub"):  # OpenID Connect Core 5.3.2
        from authlib.integrations.base_client import OAuthError

        raise OAuthError(description="the userinfo answer is about someone else")
    return {**id_claims, **extra, "iss": id_claims["iss"], "sub": id_claims["sub"]}


def _open_session(
    request: Request, db: Session, claims: ProviderClaims, settings: Settings
) -> None:
    user = sign_in_by_provider(
        db=db, claims=claims, create_users=settings.oidc_create_users,
        admin_group=settings.oidc_admin_group, client=client_address(request),
    )  # fmt: skip
    log_in(request, db, user)
