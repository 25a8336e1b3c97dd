"""A run's provenance: its RO-Crate, read back with the RO-Crate library (ro-crate-py), from
the API and from the outputs zip, and the inputs it names downloadable by their owner only."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rocrate.rocrate import ROCrate

from tests.conftest import write_model
from tests.integration.conftest import Server, _server, logged_in
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("provenance")
    for srv in _server(tmp, {}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        srv.add_user("carol")
        yield srv


def start(server: Server, **params: object) -> int:
    with server.http() as api:
        answer = api.post(
            "/runs",
            data={"model": "toy", "params": json.dumps(params)},
            files={"inputs.forcing": ("my forcing.csv", FORCING.encode())},
        )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_a_run_exports_its_provenance_as_an_ro_crate(crate_server: Server, tmp_path: Path) -> None:
    run_id = start(crate_server, days=2, albedo=0.1)
    run = crate_server.wait_for_run(run_id)
    assert run["state"] == "succeeded"
    with crate_server.http() as api:
        model = api.get("/models/toy").json()
        answer = api.get(f"/runs/{run_id}/provenance")
        assert answer.status_code == 200
        zipped = api.get(f"/runs/{run_id}/outputs.zip")
        assert zipped.status_code == 200
        given = api.get(f"/runs/{run_id}/inputs/forcing")

    # The zip holds ro-crate-metadata.json at its root, the same as the API answers.
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert json.loads(archive.read("ro-crate-metadata.json")) == answer.json()
    (tmp_path / "run.zip").write_bytes(zipped.content)
    crate = ROCrate(str(tmp_path / "run.zip"))

    # What came out: every output is a data entity of the crate, with its sha256.
    outputs = {o["path"]: o for o in run["outputs"]}
    files = {e.id: e for e in crate.data_entities}
    for output in run["outputs"]:
        entity = files[f"{output['task']}/{output['path']}"]
        assert entity["sha256"] == output["sha256"]
        assert int(entity["contentSize"]) == output["size"]
    assert "results/summary.json" in outputs

    # What ran, who ran it, what went in: the run is a CreateAction of the model version.
    (action,) = [a for a in crate.get_by_type("CreateAction") if a.id == f"#run-{run_id}"]
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert action["agent"]["name"] == "admin"
    instrument = action["instrument"]
    assert instrument["name"] == "toy"
    assert instrument["softwareVersion"] == "0.1"
    assert instrument["identifier"] == f"sha256:{model['content_hash']}"
    objects = {o.id: o for o in action["object"]}
    assert objects["#param-days"]["value"] == 2
    assert objects["#param-albedo"]["value"] == 0.1
    assert "days = 2" in objects["#parameter-file"]["text"]
    (forcing,) = [o for o in objects.values() if o.id.endswith("/inputs/forcing")]
    assert forcing["name"] == "my forcing.csv"
    assert forcing["sha256"] == hashlib.sha256(FORCING.encode()).hexdigest()
    assert {r.id for r in action["result"]} == {
        f"{o['task']}/{o['path']}".replace(" ", "%20") for o in run["outputs"]
    }
    assert action["startTime"].endswith("Z")

    # The input it names downloads as it was given.
    assert given.status_code == 200
    assert given.content == FORCING.encode()


def test_provenance_and_inputs_are_the_owners_only(crate_server: Server) -> None:
    run_id = start(crate_server, days=1)
    crate_server.wait_for_run(run_id)
    with crate_server.http("carol") as other:
        assert other.get(f"/runs/{run_id}/provenance").status_code == 404
        assert other.get(f"/runs/{run_id}/inputs/forcing").status_code == 404
    with crate_server.http(None) as anonymous:
        assert anonymous.get(f"/runs/{run_id}/provenance").status_code == 401
    with crate_server.http() as api:
        missing = api.get(f"/runs/{run_id}/inputs/nope")
        assert missing.status_code == 404
        assert "no input nope" in missing.json()["detail"]


def test_the_run_page_lists_inputs_and_compare_tells_inputs_apart(crate_server: Server) -> None:
    first = start(crate_server, days=1)
    with crate_server.http() as api:
        other_forcing = FORCING + "3,12.5\n"
        answer = api.post(
            "/runs",
            data={"model": "toy", "params": json.dumps({"days": 1})},
            files={"inputs.forcing": ("my forcing.csv", other_forcing.encode())},
        )
        second = int(answer.json()["id"])
    crate_server.wait_for_run(first)
    crate_server.wait_for_run(second)
    with logged_in(crate_server) as browser:
        page = browser.get(f"/runs/{first}").text
        digest = hashlib.sha256(FORCING.encode()).hexdigest()
        assert f'href="/api/v1/runs/{first}/inputs/forcing" download>my forcing.csv</a>' in page
        assert f'title="{digest}"' in page
        assert f'href="/api/v1/runs/{first}/provenance"' in page
        # the CSV input's first rows, as a table (its header, then its rows)
        head = page[page.index('class="input-head"') :]
        assert "<th>day</th><th>temp</th>" in head
        assert "<td>1</td><td>10.5</td></tr><tr><td>2</td><td>11.0</td>" in head
        compared = browser.get(f"/compare?a={first}&b={second}").text
        assert "Both runs have the same parameters." in compared
        assert "1 of 1 inputs differ" in compared
        same = browser.get(f"/compare?a={first}&b={first}").text
        assert "Both runs had the same input files." in same
