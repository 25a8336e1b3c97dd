"""The one typed Settings object: built at the edge (CLI, app factory) and passed in.

Values come from ``SIMYARD_*`` environment variables, then ``simyard.toml`` in the
current folder, then the defaults here. Nothing else in simyard reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from simyard.errors import SimyardError
from simyard.manifest.units import Size

if TYPE_CHECKING:
    from simyard.domain.ratelimit import LoginRule, RunRate
    from simyard.engine.task import EngineOptions

RUN_RATE_PATTERN = r"^\s*(\d+\s*/\s*(second|minute|hour|day)\s*)?$"  # "60/minute", or ""


class Settings(BaseSettings):
    """Configuration of one simyard installation (see SPEC.md, "Configuration")."""

    model_config = SettingsConfigDict(
        env_prefix="SIMYARD_", toml_file="simyard.toml", extra="ignore", frozen=True
    )

    home: Path = Path(".simyard")
    database_url: str | None = None  # default: SQLite file in home
    storage_url: str | None = None  # default: file:// folder in home
    s3_endpoint_url: str | None = None  # an s3:// store on a server other than AWS
    executor: str = "local"  # or dask://HOST:PORT (tls://... with dask_tls_*), or dask-cluster
    cluster_file: Path | None = None  # SIMYARD_EXECUTOR=dask-cluster: the cluster to run
    dask_tls_ca_file: Path | None = None
    dask_tls_cert_file: Path | None = None
    dask_tls_key_file: Path | None = None
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None  # default: generated into home
    heartbeat_timeout: float = Field(default=60.0, ge=15)  # heartbeats come every 5 s
    # Seconds the dispatch lease lasts unrenewed; a server that stalls longer stops its attempts.
    lease_ttl: float = Field(default=10.0, ge=1)
    # Seconds a task attempt retries the storage (with backoff) before it gives up: a model
    # that has finished keeps its outputs until they are stored (issue 18).
    storage_retry_for: float = Field(default=300.0, ge=0)
    smtp_url: SecretStr | None = None  # none: mail goes to the outbox page
    mail_from: str | None = None  # default: simyard@<host name>
    # Networks a user's webhook or chat URL may reach although they are loopback, private,
    # link-local or metadata addresses, e.g. "10.0.0.0/8,127.0.0.1"; webhook_allow: old name.
    outbound_allow: str = ""
    webhook_allow: str = ""
    # The CLI client's side: where the server is and who we are.
    url: str | None = None
    token: SecretStr | None = None
    credentials_file: Path = Path.home() / ".config" / "simyard" / "credentials.json"
    max_parallel: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    max_log_size: Size = 16 * 2**20
    kill_grace: float = Field(default=5.0, ge=0)
    max_processes: int = Field(default=1024, ge=1)
    # A server run as root runs each task attempt as a uid of its own from this range (gid
    # the same number); no real user may have one of them (see docs/server.md).
    model_uid_first: int = Field(default=2_000_000_000, ge=1, lt=2**32 - 1)
    model_uid_count: int = Field(default=65_536, ge=1)
    max_input_size: Size = 2**30
    session_idle_timeout: float = Field(default=12 * 3600, gt=0)  # seconds without a request
    session_max_age: float = Field(default=7 * 24 * 3600, gt=0)  # seconds after the login
    max_request_size: Size = 16 * 2**20  # any body but a multipart upload (JSON, forms)
    max_upload_request_size: Size = 4 * 2**30  # a multipart body, every file in it together
    max_unpacked_size: Size = 4 * 2**30  # no archive input unpacks to more, whatever its slot says
    # Model images (docs/environments.md): a layer past this is refused at registration; a
    # worker keeps at most this much of unpacked images (least recently used ones go).
    image_max_layer_size: Size = 4 * 2**30
    image_cache_size: Size = 20 * 2**30
    # Failed logins (form and POST /api/v1/tokens): this many attempts are free per account
    # (per client address: the second number), then each waits login_delay seconds, doubled
    # per further failure up to login_max_delay (see docs/security.md, "Rate limits").
    login_free_attempts: int = Field(default=5, ge=1)
    login_free_attempts_per_address: int = Field(default=20, ge=1)
    login_delay: float = Field(default=1.0, gt=0)
    login_max_delay: float = Field(default=900.0, gt=0)
    # Runs (a sweep counts once) a user may create: "N/second|minute|hour|day"; "": no limit.
    run_rate: str = Field(default="120/minute", pattern=RUN_RATE_PATTERN)
    # Proxies whose X-Forwarded-For names the client (addresses or networks, comma-separated);
    # empty: the client is the connecting address, whatever a header says.
    trusted_proxies: str = ""
    audit_retention_days: int = Field(default=365, ge=1)  # older audit entries are deleted
    # Single sign-on with OpenID Connect (docs/security.md); off while oidc_issuer is unset.
    oidc_issuer: str | None = None  # discovery at ISSUER/.well-known/openid-configuration
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_groups_claim: str = "groups"  # the claim listing the user's groups
    oidc_admin_group: str | None = None  # its members are admins (checked at every SSO login)
    oidc_create_users: bool = True  # an unknown user signing in gets an account
    local_passwords: bool = True  # false: only SSO logs in; API tokens are made on /account

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{(self.home / 'simyard.db').resolve()}"

    @property
    def resolved_outbound_allow(self) -> str:
        """The outbound allow list, under its new name and its old one (webhook_allow)."""
        return ",".join(part for part in (self.outbound_allow, self.webhook_allow) if part)

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, defaulting to a folder in the data folder."""
        return self.storage_url or f"file://{(self.home / 'storage').resolve()}"

    def private_folders(self) -> dict[str, Path]:
        """Folders no model may see, by the setting that places them (resolved).

        The data folder (database, secret key, storage, live logs, caches, working folders),
        and the file store's folder and the SQLite database's folder where they are set
        elsewhere (the folder, not the file: SQLite keeps its journal beside it).
        """
        from sqlalchemy.engine import make_url

        from simyard.storage.registry import file_store_root

        folders = {"SIMYARD_HOME": self.home.resolve()}
        storage = file_store_root(self.resolved_storage_url)
        if storage is not None:
            folders["SIMYARD_STORAGE_URL"] = storage.resolve()
        database = make_url(self.resolved_database_url)
        sqlite_file = database.database if database.get_backend_name() == "sqlite" else None
        if sqlite_file and sqlite_file != ":memory:":
            folders["SIMYARD_DATABASE_URL"] = Path(sqlite_file).resolve().parent
        return folders

    def check_models_cannot_see_data(self) -> None:
        """Refuse a data folder the sandbox cannot hide from models, naming its setting."""
        if self.sandbox == "none":
            return  # no sandbox at all: the operator chose to trust every model
        from simyard.engine.sandbox import hiding_problem

        for setting, folder in self.private_folders().items():
            problem = hiding_problem(folder)
            if problem is not None:
                raise SimyardError(
                    f"{setting} puts server data in {folder}, which the sandbox cannot hide "
                    f"from models: {problem}. Choose a folder of its own, e.g. /var/lib/simyard"
                )

    def login_rule(self) -> LoginRule:
        """How failed logins are throttled (domain/ratelimit.py)."""
        from simyard.domain.ratelimit import LoginRule

        return LoginRule(
            free_per_account=self.login_free_attempts,
            free_per_address=self.login_free_attempts_per_address,
            delay=self.login_delay,
            max_delay=self.login_max_delay,
        )

    def run_rate_limit(self) -> RunRate | None:
        """How many runs a user may create per period; None: no limit."""
        from simyard.domain.ratelimit import RunRate

        return RunRate.parse(self.run_rate)

    def engine_options(self) -> EngineOptions:
        """The engine's share of the settings."""
        from simyard.engine.task import EngineOptions

        return EngineOptions(
            sandbox=self.sandbox,
            max_log_bytes=self.max_log_size,
            kill_grace=self.kill_grace,
            max_processes=self.max_processes,
            model_uid_first=self.model_uid_first,
            model_uid_count=self.model_uid_count,
            hidden_dirs=tuple(dict.fromkeys(self.private_folders().values())),
            max_unpacked_bytes=self.max_unpacked_size,
            image_cache_bytes=self.image_cache_size,
        )
