"""Rate limits on real servers: failed logins (form and token request) per account and per
client address, with growing waits told by Retry-After; run creation per user; counts shared
by two servers on one PostgreSQL database, and counted without a lost update."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.ratelimit import LoginRule, RunRate, reserve_login, spend_run
from tests.conftest import write_model
from tests.integration.conftest import Server, _server

PASSWORD = "correct horse battery"  # what Server.add_user gives every account
LIMITS = {
    "SIMYARD_LOGIN_FREE_ATTEMPTS": "3",
    "SIMYARD_LOGIN_FREE_ATTEMPTS_PER_ADDRESS": "6",
    "SIMYARD_LOGIN_DELAY": "5",  # a password check can take a second on a busy machine
    "SIMYARD_LOGIN_MAX_DELAY": "40",
    "SIMYARD_RUN_RATE": "3/day",  # a day: the test never straddles a window's end
}
QUICK_MODEL = """\
simyard: 1
name: quick
version: "1"
parameters:
  n: {type: integer, default: 1, min: 1, max: 10}
tasks:
  run:
    command: [python3, -c, "print(1)"]
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    for srv in _server(tmp, LIMITS):
        assert srv.cli("models", "add", write_model(tmp / "quick", QUICK_MODEL)).returncode == 0
        yield srv


_names = iter(range(10_000))


def new_user(server: Server) -> str:
    """A new account with PASSWORD, added on the admin's Users page (quicker than the CLI)."""
    name = f"user{next(_names)}"
    with Client(server, "127.0.0.2") as admin:
        assert admin.form_login("admin", PASSWORD).status_code == 303
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', admin.http.get("/admin").text)
        assert csrf
        added = admin.http.post(
            "/admin/users",
            data={"name": name, "email": f"{name}@example.org", "password": PASSWORD,
                  "csrf_token": csrf.group(1)},
        )  # fmt: skip
        assert added.status_code == 303, added.text
    return name


class Client:
    """A browser and an API caller from one loopback address (127.0.0.N is as good a
    client address as any other: the server sees each as a different client)."""

    def __init__(self, server: Server, address: str = "127.0.0.1") -> None:
        transport = httpx.HTTPTransport(local_address=address)
        self.http = httpx.Client(
            base_url=server.url, timeout=30, follow_redirects=False, transport=transport
        )

    def form_login(self, user: str, password: str) -> httpx.Response:
        page = self.http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        data = {"username": user, "password": password, "csrf_token": token.group(1)}
        return self.http.post("/login", data=data)

    def token_request(self, user: str, password: str) -> httpx.Response:
        return self.http.post("/api/v1/tokens", json={"username": user, "password": password})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()


def api_of(server: Server, user: str) -> httpx.Client:
    with Client(server, "127.0.0.2") as client:
        token = client.token_request(user, PASSWORD).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=60)


def wait_of(answer: httpx.Response) -> int:
    assert answer.status_code == 429, answer.text
    return int(answer.headers["retry-after"])


@pytest.mark.slow
def test_after_wrong_passwords_the_form_and_the_token_request_answer_429_from_anywhere(
    limited: Server,
) -> None:
    user = new_user(limited)
    with Client(limited, "127.0.0.3") as here, Client(limited, "127.0.0.4") as elsewhere:
        for _ in range(3):
            assert here.form_login(user, "not the password").status_code == 401
        refused = here.form_login(user, PASSWORD)  # right, but during the wait: refused
        assert wait_of(refused) >= 1
        assert "Too many failed logins" in refused.text
        assert wait_of(here.token_request(user, PASSWORD)) >= 1
        assert "too many failed logins" in here.token_request(user, PASSWORD).json()["detail"]
        # the account's count holds at another address too
        assert wait_of(elsewhere.token_request(user, PASSWORD)) >= 1
        assert wait_of(elsewhere.form_login(user, PASSWORD)) >= 1


@pytest.mark.slow
def test_each_further_failure_waits_longer(limited: Server) -> None:
    user = new_user(limited)
    with Client(limited, "127.0.0.5") as client:
        for _ in range(3):
            assert client.token_request(user, "not the password").status_code == 401
        first = wait_of(client.token_request(user, "not the password"))
        time.sleep(first)
        assert client.token_request(user, "not the password").status_code == 401
        second = wait_of(client.token_request(user, "not the password"))
        assert first <= 5 < second <= 10  # 5 s from the third failure, then 10 s


@pytest.mark.slow
def test_the_right_password_after_the_wait_logs_in_and_resets_the_count(limited: Server) -> None:
    user = new_user(limited)
    with Client(limited, "127.0.0.6") as client:
        for _ in range(3):
            assert client.token_request(user, "not the password").status_code == 401
        time.sleep(wait_of(client.form_login(user, PASSWORD)))
        logged_in = client.form_login(user, PASSWORD)
        assert logged_in.status_code == 303, logged_in.text
        # three free attempts again, not one more wait
        for _ in range(3):
            assert client.token_request(user, "not the password").status_code == 401
        assert client.token_request(user, "not the password").status_code == 429


@pytest.mark.slow
def test_an_address_failing_for_many_accounts_waits_while_another_address_does_not(
    limited: Server,
) -> None:
    users = [new_user(limited) for _ in range(4)]
    with Client(limited, "127.0.0.7") as guesser, Client(limited, "127.0.0.8") as other:
        for user in users[:3]:  # two each: no account reaches its three free attempts
            for _ in range(2):
                assert guesser.form_login(user, "not the password").status_code == 401
        refused = guesser.form_login(users[3], PASSWORD)
        assert wait_of(refused) >= 1
        assert other.form_login(users[3], PASSWORD).status_code == 303
        assert other.token_request(users[0], PASSWORD).status_code == 201


@pytest.mark.slow
def test_a_forwarded_for_header_does_not_change_the_address_without_trusted_proxies(
    limited: Server,
) -> None:
    users = [new_user(limited) for _ in range(4)]
    # uvicorn on its own believes the header from 127.0.0.1: simyard tells it not to
    with Client(limited, "127.0.0.1") as guesser:
        for i, user in enumerate(users[:3]):
            for j in range(2):
                spoofed = {"X-Forwarded-For": f"198.51.100.{i * 2 + j + 1}"}
                answer = guesser.http.post(
                    "/api/v1/tokens", json={"username": user, "password": "no"}, headers=spoofed
                )
                assert answer.status_code == 401
        assert wait_of(guesser.token_request(users[3], PASSWORD)) >= 1


@pytest.mark.slow
def test_runs_over_the_users_rate_answer_429_naming_the_limit(limited: Server) -> None:
    user = new_user(limited)
    with api_of(limited, user) as api:
        for n in (1, 2):
            assert api.post("/runs", json={"model": "quick", "params": {"n": n}}).status_code == 201
        sweep = api.post("/sweeps", json={"model": "quick", "axes": {"n": [1, 2, 3, 4]}})
        assert sweep.status_code == 201, sweep.text  # a sweep counts once, whatever its size
        assert api.post("/runs/validate", json={"model": "quick"}).status_code == 200
        refused = api.post("/runs", json={"model": "quick", "params": {"n": 3}})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json() == {
            "errors": [{"field": "run_rate", "message": refused.json()["errors"][0]["message"]}],
            "warnings": [],
        }
        assert "at most 3 per day" in refused.json()["errors"][0]["message"]
        run_id = api.get("/runs").json()[0]["id"]
        assert api.post(f"/runs/{run_id}/rerun").status_code == 429
    other = new_user(limited)  # the rate is per user
    with api_of(limited, other) as api:
        assert api.post("/runs", json={"model": "quick"}).status_code == 201


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Server, Server]]:
    shared = {"SIMYARD_DATABASE_URL": postgres_url, **LIMITS}
    first_gen = _server(tmp_path / "a", shared)
    first = next(first_gen)
    second_gen = _server(tmp_path / "b", shared, add_admin=False)
    second = next(second_gen)
    second.tokens = dict(first.tokens)
    yield first, second
    for gen in (second_gen, first_gen):
        for _ in gen:
            pass


@pytest.mark.slow
def test_two_servers_on_one_postgresql_database_share_the_counts(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    user = new_user(first)
    with Client(first, "127.0.0.10") as one, Client(second, "127.0.0.10") as two:
        assert one.token_request(user, "not the password").status_code == 401
        assert two.form_login(user, "not the password").status_code == 401
        assert one.form_login(user, "not the password").status_code == 401
        assert wait_of(two.token_request(user, PASSWORD)) >= 1
        assert wait_of(one.form_login(user, PASSWORD)) >= 1


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()


def in_threads(count: int, work: object) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_runs_are_counted_without_a_lost_update(
    sessions: sessionmaker[Session],
) -> None:
    rate = RunRate(30, 86_400, "30 per day")
    allowed: list[bool] = []

    def spend_ten() -> None:
        for _ in range(10):
            with sessions() as db, db.begin():
                allowed.append(spend_run(db=db, rate=rate, user_id=1, now=1000.0) is None)

    in_threads(6, spend_ten)
    assert len(allowed) == 60
    assert allowed.count(True) == 30  # exactly the amount, neither more nor fewer


def test_concurrent_guesses_get_no_more_than_the_free_attempts(
    sessions: sessionmaker[Session],
) -> None:
    rule = LoginRule(free_per_account=3, free_per_address=100, delay=600, max_delay=600)
    allowed: list[bool] = []

    def guess() -> None:
        with sessions() as db, db.begin():
            wait = reserve_login(db=db, rule=rule, account="ann", address="x", now=1000.0)
            allowed.append(wait is None)

    in_threads(12, guess)
    assert allowed.count(True) == 3
