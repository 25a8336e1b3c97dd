"""Request bodies are capped: a huge body gets a 413 naming the limit, and the server's memory
stays where it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.conftest import Server, _server

pytestmark = pytest.mark.slow

GIB = 2**30
CHUNK = b"\x20" * (1 << 20)


@pytest.fixture(scope="module")
def small_limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SIMYARD_MAX_REQUEST_SIZE": "1MiB", "SIMYARD_MAX_UPLOAD_REQUEST_SIZE": "8MiB"}
    yield from _server(tmp_path_factory.mktemp("limits"), env)


def gibibyte_of_json() -> Iterator[bytes]:
    """A JSON object 1 GiB long (mostly spaces), sent as it is made: chunked, no length."""
    yield b'{"model": "toy", "params": {'
    for _ in range(GIB // len(CHUNK)):
        yield CHUNK
    yield b"}}"


def rss(server: Server) -> int:
    assert server.process is not None
    return int(psutil.Process(server.process.pid).memory_info().rss)


def assert_413_naming(answer: httpx.Response, setting: str) -> None:
    assert answer.status_code == 413, answer.text[:300]
    error = answer.json()["errors"][0]
    assert error["field"] == "body"
    assert setting in error["message"]


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    small_limits_server: Server,
) -> None:
    body = json.dumps({"model": "toy", "params": {"x": "y" * (2 << 20)}})
    with small_limits_server.http() as api:
        answer = api.post(
            "/runs/validate", content=body, headers={"content-type": "application/json"}
        )
    assert_413_naming(answer, "SIMYARD_MAX_REQUEST_SIZE")
    assert "1.0 MiB" in answer.json()["errors"][0]["message"]


def test_a_streamed_gibibyte_is_cut_off_and_the_servers_memory_stays_flat(
    small_limits_server: Server,
) -> None:
    with small_limits_server.http() as api:
        assert api.get("/runs").status_code == 200  # warm: imports and caches in place
        before = rss(small_limits_server)
        answer = api.post(
            "/runs", content=gibibyte_of_json(), headers={"content-type": "application/json"}
        )
        after = rss(small_limits_server)
    assert_413_naming(answer, "SIMYARD_MAX_REQUEST_SIZE")
    print(f"server RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB")
    assert after - before < 50 * 2**20


def test_a_gibibyte_upload_over_the_upload_limit_is_refused(
    small_limits_server: Server, tmp_path: Path
) -> None:
    def multipart() -> Iterator[bytes]:
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="inputs.forcing"; '
            b'filename="f.csv"\r\nContent-Type: text/csv\r\n\r\n'
        )
        for _ in range(GIB // len(CHUNK)):
            yield CHUNK
        yield b"\r\n--xyz--\r\n"

    with small_limits_server.http() as api:
        before = rss(small_limits_server)
        answer = api.post(
            "/runs/validate",
            content=multipart(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        after = rss(small_limits_server)
    assert_413_naming(answer, "SIMYARD_MAX_UPLOAD_REQUEST_SIZE")
    assert after - before < 50 * 2**20
    leftovers = [p for p in small_limits_server.home.iterdir() if p.name.startswith("upload-")]
    assert leftovers == []


def test_a_body_under_the_limit_still_gets_its_answer(small_limits_server: Server) -> None:
    with small_limits_server.http() as api:
        answer = api.post("/runs/validate", json={"model": "nope", "params": {}})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "model"


@pytest.mark.parametrize("depth", [100_000, 5_000])
def test_deeply_nested_params_are_a_422_naming_the_field(
    small_limits_server: Server, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    with small_limits_server.http() as api:
        as_json = api.post(
            "/runs/validate",
            content='{"model": "toy", "params": ' + nested + "}",
            headers={"content-type": "application/json"},
        )
        as_form = api.post(
            "/runs/validate",
            data={"model": "toy", "params": '{"a":' * depth + "1" + "}" * depth},
            files={"x": ("", b"")},  # an empty file field: the body is multipart
        )
    assert as_json.status_code == 422, as_json.text[:300]
    assert as_json.json()["errors"][0]["field"] == "params"
    assert as_form.status_code == 422, as_form.text[:300]
    assert as_form.json()["errors"][0]["field"] == "params"
