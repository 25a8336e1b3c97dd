"""Build the running platform from Settings: database, store, executor, dispatcher.

The one place where backends are chosen by configuration; everything else receives
what it needs through constructors and function arguments.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from simyard.config import Settings
from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.dispatch import Dispatcher, LiveLogs
from simyard.domain.users import VerifiedTokens
from simyard.errors import SimyardError
from simyard.executors.base import Executor
from simyard.notify.outbox import Outbox, OutboxConfig, default_sender
from simyard.storage.base import Store
from simyard.storage.registry import open_store


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]  # read-only: they wait for no writer (db/session.py)
    dispatching: sessionmaker[Session]  # the dispatcher's: first in line for the writer


def idle_transaction_timeout(settings: Settings) -> float:
    """Seconds after which the database ends a transaction left waiting for its next
    statement: three leases, at least 30 s. (A lease's own and the dispatcher's
    transactions are ended after one lease: dispatch/lease.py.)"""
    return max(3 * settings.lease_ttl, 30.0)


def open_database(settings: Settings) -> Database:
    """Open the configured database and bring its schema up to date."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(
        settings.resolved_database_url, idle_transaction_timeout=idle_transaction_timeout(settings)
    )
    upgrade_schema(engine)
    return Database(
        engine,
        session_factory(engine),
        session_factory(engine, read_only=True),
        session_factory(engine, first_in_line=True),
    )


def make_executor(settings: Settings, store: Store) -> Executor:
    """The executor named by ``SIMYARD_EXECUTOR``; its attempts wait out storage outages."""
    from simyard.storage.retry import RetryingStore

    store = RetryingStore(store, settings.storage_retry_for)
    if settings.executor == "local":
        from simyard.executors.local import LocalExecutor

        return LocalExecutor(
            store=store,
            work_root=(settings.home / "work").resolve(),
            cache_root=(settings.home / "cache" / "bundles").resolve(),
            options=settings.engine_options(),
            slots=settings.max_parallel,
        )
    if settings.executor.startswith(("dask://", "tls://", "tcp://")):
        from simyard.executors.dask import DaskExecutor

        address = settings.executor
        if address.startswith("dask://"):
            scheme = "tls://" if settings.dask_tls_ca_file else "tcp://"
            address = scheme + address.removeprefix("dask://")
        return DaskExecutor(
            address=address,
            store=store,
            options=settings.engine_options(),
            security=dask_security(settings),
            min_slots=settings.max_parallel,
        )
    if settings.executor == "dask-cluster":
        return make_cluster_executor(settings, store)
    raise SimyardError(
        f"unknown executor {settings.executor!r}: use 'local', 'dask://HOST:PORT' or 'dask-cluster'"
    )


def make_cluster_executor(settings: Settings, store: Store) -> Executor:
    """The elastic executor: its own Dask cluster from ``SIMYARD_CLUSTER_FILE``."""
    from simyard.executors.cluster import ClusterExecutor
    from simyard.executors.clusterfile import load_cluster_file

    if settings.cluster_file is None:
        raise SimyardError("SIMYARD_EXECUTOR=dask-cluster needs SIMYARD_CLUSTER_FILE")
    return ClusterExecutor(
        spec=load_cluster_file(settings.cluster_file),
        store=store,
        options=settings.engine_options(),
        state_file=(settings.home / "cluster" / "workers.json").resolve(),
        security=dask_security(settings),
    )


def watch_queue(executor: Executor, dispatcher: Dispatcher) -> None:
    """An elastic executor scales from the queue, while this server dispatches (else to zero)."""
    from simyard.dispatch.demand import QueueReader
    from simyard.executors.cluster import ClusterExecutor
    from simyard.executors.scaling import Demand

    if not isinstance(executor, ClusterExecutor):
        return
    spec = executor.spec
    reader = QueueReader(
        dispatcher.sessions, queued_limit=4 * spec.max_workers * executor.shape.threads
    )

    def demand() -> Demand:
        return reader() if dispatcher.leading.is_set() else Demand()

    executor.demand = demand


def dask_security(settings: Settings) -> object | None:
    """Dask TLS from the configured certificate files; None for plain TCP (loopback only)."""
    if settings.dask_tls_ca_file is None:
        return None
    if settings.dask_tls_cert_file is None or settings.dask_tls_key_file is None:
        raise SimyardError(
            "Dask TLS needs SIMYARD_DASK_TLS_CA_FILE, SIMYARD_DASK_TLS_CERT_FILE "
            "and SIMYARD_DASK_TLS_KEY_FILE together"
        )
    from distributed.security import Security

    return Security(
        tls_ca_file=str(settings.dask_tls_ca_file),
        tls_client_cert=str(settings.dask_tls_cert_file) if settings.dask_tls_cert_file else None,
        tls_client_key=str(settings.dask_tls_key_file) if settings.dask_tls_key_file else None,
        require_encryption=True,
    )


def secret_key(settings: Settings) -> str:
    """The session-signing key: configured, or generated once into the data folder."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.home / "secret_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def make_outbox(settings: Settings, database: Database) -> Outbox:
    """The notification outbox, sending by SMTP when SIMYARD_SMTP_URL is set."""
    config = OutboxConfig(
        base_url=settings.base_url,
        smtp_url=settings.smtp_url.get_secret_value() if settings.smtp_url else None,
        mail_from=settings.mail_from or default_sender(),
        outbound_allow=settings.resolved_outbound_allow,
    )
    return Outbox(sessions=database.sessions, config=config)


@dataclass
class Platform:
    """Everything a server process runs with."""

    settings: Settings
    database: Database
    store: Store
    dispatcher: Dispatcher
    cache_root: Path
    outbox: Outbox
    tokens: VerifiedTokens = field(default_factory=VerifiedTokens)  # checked in the last 1 s

    def __post_init__(self) -> None:
        self.tokens.follow(self.database.sessions)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.database.sessions

    @property
    def readers(self) -> sessionmaker[Session]:
        return self.database.readers


def build_platform(settings: Settings) -> Platform:
    """Open the database and store, start nothing yet."""
    database = open_database(settings)
    store = open_store(settings.resolved_storage_url, endpoint_url=settings.s3_endpoint_url)
    executor = make_executor(settings, store)
    live = LiveLogs((settings.home / "live").resolve(), settings.max_log_size)
    dispatcher = Dispatcher(
        sessions=database.dispatching,
        store=store,
        executor=executor,
        live_logs=live,
        lost_after=settings.heartbeat_timeout,
        lease_ttl=settings.lease_ttl,
    )
    watch_queue(executor, dispatcher)
    cache_root = (settings.home / "cache" / "bundles").resolve()
    outbox = make_outbox(settings, database)
    return Platform(settings, database, store, dispatcher, cache_root, outbox)
