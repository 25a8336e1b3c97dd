"""Malformed requests get a 4xx naming the field, never a 500: deep JSON, a version that is
no string, ids and cursors too large for the database. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.conftest import PG_ADMIN_URL, Server, _server
from tests.integration.test_web_pages import browser

pytestmark = pytest.mark.slow

PROBE = """\
simyard: 1
name: probe
version: "1"
parameters:
  days: {type: integer, default: 3, min: 1, max: 100}
tasks:
  hello:
    command: [python3, -c, "print('hello')"]
"""
TOO_BIG = [str(10**30), str(2**63), str(2**31)]  # ids are 32-bit INTEGER on PostgreSQL
MAX_ID = 2**31 - 1
DEEP_ARRAYS = "[" * 100_000
DEEP_OBJECTS = '{"a": ' * 5000 + "1" + "}" * 5000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per database for the module, with the probe model and one finished run."""
    extra: dict[str, str] = {}
    database = None
    if request.param == "postgresql":
        database = f"simyard_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        extra["SIMYARD_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    tmp = tmp_path_factory.mktemp(request.param)
    model = tmp / "probe"
    model.mkdir()
    (model / "simyard.yaml").write_text(textwrap.dedent(PROBE))
    try:
        for srv in _server(tmp, extra):
            done = srv.cli("models", "add", model)
            assert done.returncode == 0, done.stderr
            with srv.http() as api:
                run = api.post("/runs", json={"model": "probe", "params": {}}).json()
            srv.wait_for_run(run["id"])
            yield srv
    finally:
        if database is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def web(server: Server) -> Iterator[httpx.Client]:
    """A browser logged in once for the module (logins are rate-limited)."""
    with browser(server) as client:
        yield client


def first_run(server: Server) -> int:
    with server.http() as api:
        return int(api.get("/runs").json()[0]["id"])


def refused_naming(answer: httpx.Response, field: str) -> str:
    """Assert a 422 in the API's shape whose first problem names ``field``; its message."""
    assert answer.status_code == 422, (answer.status_code, answer.text[:500])
    body: dict[str, Any] = answer.json()
    assert body["errors"][0]["field"] == field, body
    assert body["warnings"] == []
    return str(body["errors"][0]["message"])


@pytest.mark.parametrize("path", ["/runs", "/runs/validate", "/sweeps/validate"])
@pytest.mark.parametrize("params", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
def test_deeply_nested_params_in_a_json_body_are_refused(
    server: Server, path: str, params: str
) -> None:
    body = '{"model": "probe", "params": ' + params + "}"
    with server.http() as api:
        answer = api.post(path, content=body, headers={"content-type": "application/json"})

    assert refused_naming(answer, "params") == "nested deeper than 64 levels"


@pytest.mark.parametrize("path", ["/runs", "/sweeps"])
@pytest.mark.parametrize("params", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
def test_deeply_nested_params_in_a_form_field_are_refused(
    server: Server, path: str, params: str
) -> None:
    with server.http() as api:
        answer = api.post(path, files={"model": (None, "probe"), "params": (None, params)})

    assert refused_naming(answer, "params") == "nested deeper than 64 levels"
    with server.http() as api:
        assert len(api.get("/runs").json()) == 1  # nothing was created


@pytest.mark.parametrize("version", [["1"], {"v": "1"}, 1, True])
def test_a_version_that_is_no_string_is_refused(server: Server, version: Any) -> None:
    with server.http() as api:
        answer = api.post("/runs/validate", json={"model": "probe", "version": version})

    assert refused_naming(answer, "version")


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("path", ["/runs", "/sweeps"])
def test_a_list_cursor_too_large_for_the_database_is_refused(
    server: Server, path: str, value: str
) -> None:
    with server.http() as api:
        answer = api.get(path, params={"before": value})

    assert "less than or equal to 2147483647" in refused_naming(answer, "before")


@pytest.mark.parametrize("value", [*TOO_BIG, "-1"])
def test_an_events_cursor_out_of_range_is_refused(server: Server, value: str) -> None:
    with server.http() as api:
        answer = api.get(f"/runs/{first_run(server)}/events", params={"after": value})

    assert refused_naming(answer, "after")


def test_a_log_offset_too_large_is_refused_and_the_largest_reads_nothing(server: Server) -> None:
    run_id = first_run(server)
    with server.http() as api:
        answer = api.get(f"/runs/{run_id}/logs/hello", params={"offset": str(2**63)})
        assert refused_naming(answer, "offset")

        answer = api.get(f"/runs/{run_id}/logs/hello", params={"offset": str(2**63 - 1)})
        assert answer.status_code == 200
        assert answer.content == b""
        assert api.get(f"/runs/{run_id}/logs/hello").text == "hello\n"


@pytest.mark.parametrize(
    "path",
    [
        "/runs/{id}",
        "/runs/{id}/cancel",
        "/runs/{id}/rerun",
        "/runs/{id}/outputs",
        "/runs/{id}/events",
        "/sweeps/{id}",
        "/sweeps/{id}/cancel",
    ],
)
def test_an_id_too_large_for_the_database_is_refused(server: Server, path: str) -> None:
    method = "POST" if path.endswith(("cancel", "rerun")) else "GET"
    field = "sweep_id" if path.startswith("/sweeps") else "run_id"
    with server.http() as api:
        answer = api.request(method, path.format(id=2**63))
        assert refused_naming(answer, field)

        assert refused_naming(api.request(method, path.format(id=MAX_ID + 1)), field)
        assert api.request(method, path.format(id=MAX_ID)).status_code == 404  # just unknown


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/runs/{2**63}", "run_id"),
        (f"/sweeps/{2**63}", "sweep_id"),
        (f"/runs?before={10**30}", "before"),
        (f"/sweeps?before={2**63}", "before"),
        (f"/runs/{2**31}", "run_id"),
    ],
)
def test_a_web_page_with_an_id_too_large_answers_422(
    web: httpx.Client, path: str, field: str
) -> None:
    assert refused_naming(web.get(path), field)


def test_a_well_formed_request_still_runs(server: Server) -> None:
    with server.http() as api:
        answer = api.post("/runs/validate", json={"model": "probe", "params": {"days": 5}})
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text)["errors"] == []


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/models/probe", {"version": "1\x00"}, "version"),
        ("/models/pro%00be/manifest", {}, "name"),
        ("/runs", {"model": "probe\x00", "state": "queued"}, "model"),
        ("/runs", {"state": "\x00"}, "state"),
    ],
)
def test_a_nul_character_in_a_parameter_is_refused(
    server: Server, path: str, params: dict[str, str], field: str
) -> None:
    with server.http() as api:
        answer = api.get(path, params=params)

    assert refused_naming(answer, field) == "must not contain a NUL character"


def test_a_user_name_with_a_nul_character_is_a_failed_login(server: Server) -> None:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as anonymous:
        answer = anonymous.post("/tokens", json={"username": "ad\x00min", "password": "x"})

    assert answer.status_code == 401, answer.text
