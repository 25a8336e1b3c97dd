"""No string from a client becomes a path: upload field names that try to write anywhere."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import browser
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow

SQLITE_SIDE_FILES = ("simyard.db", "simyard.db-wal", "simyard.db-shm", "server.log")


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole module (every test only sends refused requests)."""
    tmp = tmp_path_factory.mktemp("uploads")
    gen = _server(tmp, {})
    srv = next(gen)
    model = write_model(tmp / "model", MODEL, FILES)
    assert srv.cli("models", "add", model).returncode == 0
    yield srv
    next(gen, None)


def files_below(root: Path) -> set[Path]:
    """Every file below ``root`` but the database's and the log's, which change by themselves."""
    found = set()
    for folder, _dirs, names in os.walk(root):
        found |= {Path(folder) / n for n in names if n not in SQLITE_SIDE_FILES}
    return found


def hostile_names(target: Path, home: Path) -> dict[str, Path]:
    """Field names and the file each would have written on an unguarded server."""
    above = home.parent / "planted-above-home.csv"
    return {
        f"inputs.{target}": target,  # an absolute path
        "inputs.../../planted-above-home.csv": above,  # above SIMYARD_HOME
        "inputs..": home,  # "." once the prefix is cut: a folder (was a 500)
    }


def assert_refused_naming(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, answer.text
    named = [e["field"] for e in answer.json()["errors"]]
    assert field in named, named


@pytest.mark.parametrize("endpoint", ["/runs/validate", "/runs", "/sweeps/validate", "/sweeps"])
def test_an_upload_field_naming_a_path_is_refused_and_writes_nothing(
    upload_server: Server, tmp_path: Path, endpoint: str
) -> None:
    target = tmp_path / "planted" / "anywhere.csv"
    target.parent.mkdir()
    before = files_below(upload_server.home) | files_below(upload_server.home.parent)
    params = {"params": json.dumps({"days": 2})}
    if endpoint.startswith("/sweeps"):
        params["axes"] = json.dumps({"days": [1, 2]})
    with upload_server.http() as api:
        for field, would_write in hostile_names(target, upload_server.home).items():
            files = {field: ("f.csv", FORCING.encode(), "text/csv")}
            answer = api.post(endpoint, data={"model": "toy", **params}, files=files)
            assert_refused_naming(answer, field)
            assert "unknown input slot" in answer.text
            if would_write.suffix:
                assert not would_write.exists()
        listed = api.get("/runs").json() if endpoint == "/runs" else []
    assert listed == []  # nothing was created either
    after = files_below(upload_server.home) | files_below(upload_server.home.parent)
    assert after - before == set()
    assert list(target.parent.iterdir()) == []


def test_a_file_field_outside_inputs_is_refused_by_name(upload_server: Server) -> None:
    with upload_server.http() as api:
        answer = api.post(
            "/runs/validate",
            data={"model": "toy", "params": "{}"},
            files={"../../etc/passwd": ("f.csv", b"x", "text/csv")},
        )
    assert_refused_naming(answer, "../../etc/passwd")


def test_an_upload_for_an_unknown_model_writes_nothing(upload_server: Server) -> None:
    before = files_below(upload_server.home)
    with upload_server.http() as api:
        answer = api.post(
            "/runs/validate",
            data={"model": "nope", "params": "{}"},
            files={"inputs.forcing": ("f.csv", FORCING.encode(), "text/csv")},
        )
    assert_refused_naming(answer, "model")
    assert files_below(upload_server.home) - before == set()


@pytest.mark.parametrize("page", ["run", "sweep"])
def test_the_form_without_javascript_refuses_a_path_field_and_writes_nothing(
    upload_server: Server, tmp_path: Path, page: str
) -> None:
    target = tmp_path / "planted-by-form.csv"
    before = files_below(upload_server.home) | files_below(upload_server.home.parent)
    with browser(upload_server) as client:
        form_page = client.get(f"/models/toy/{page}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form_page)
        assert token
        for field, would_write in hostile_names(target, upload_server.home).items():
            answer = client.post(
                f"/models/toy/{page}",
                data={"csrf_token": token.group(1), "version": "0.1"},
                files={field: ("f.csv", FORCING.encode(), "text/csv")},
            )
            assert answer.status_code == 422, answer.text
            assert "unknown input slot" in answer.text
            if would_write.suffix:
                assert not would_write.exists()
    assert not target.exists()
    after = files_below(upload_server.home) | files_below(upload_server.home.parent)
    assert after - before == set()


def test_the_cli_refuses_an_input_slot_naming_a_path(upload_server: Server, tmp_path: Path) -> None:
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    target = tmp_path / "planted-by-cli.csv"
    done = upload_server.cli("run", "toy", "-i", f"{target}={forcing}", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown input slot" in done.stdout + done.stderr
    assert not target.exists()
