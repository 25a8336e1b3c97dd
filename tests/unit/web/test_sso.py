"""Single sign-on setup: a broken configuration stops the server; where a login may lead."""

from __future__ import annotations

import sys

import pytest
from pydantic import SecretStr

from simyard.config import Settings
from simyard.errors import SimyardError
from simyard.web.pages.auth import safe_next
from simyard.web.pages.sso import make_client

ISSUER = "http://127.0.0.1:9/"


def test_an_issuer_without_client_credentials_is_refused_naming_them() -> None:
    with pytest.raises(SimyardError, match="SIMYARD_OIDC_CLIENT_ID and SIMYARD_OIDC_CLIENT_SECRET"):
        make_client(Settings(oidc_issuer=ISSUER))


def test_scopes_without_openid_are_refused() -> None:
    settings = Settings(oidc_issuer=ISSUER, oidc_client_id="c", oidc_client_secret=SecretStr("s"),
                        oidc_scopes="email profile")  # fmt: skip
    with pytest.raises(SimyardError, match="SIMYARD_OIDC_SCOPES must include openid"):
        make_client(settings)


def test_without_authlib_the_server_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "authlib.integrations.starlette_client", None)
    settings = Settings(oidc_issuer=ISSUER, oidc_client_id="c", oidc_client_secret=SecretStr("s"))
    with pytest.raises(SimyardError, match=r"pip install 'simyard\[sso\]'"):
        make_client(settings)


def test_the_client_finds_the_provider_by_discovery_and_uses_pkce() -> None:
    client = make_client(
        Settings(oidc_issuer=ISSUER, oidc_client_id="c", oidc_client_secret=SecretStr("s"))
    )
    assert client._server_metadata_url == "http://127.0.0.1:9/.well-known/openid-configuration"
    assert client.client_kwargs["code_challenge_method"] == "S256"
    assert client.client_kwargs["scope"] == "openid email profile"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\\evil.example/", "/\t/evil.example/",
     "/\n/evil.example/", "runs"],
)  # fmt: skip
def test_after_login_the_browser_never_leaves_the_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_after_login_a_local_path_is_kept() -> None:
    assert safe_next("/runs?state=failed&model=toy") == "/runs?state=failed&model=toy"
