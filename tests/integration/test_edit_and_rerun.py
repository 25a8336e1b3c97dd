"""Names, notes and tags on runs; the warnings a run was created with, kept; a run edited
from another (its parameters and inputs, some replaced) through the API and the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server, logged_in
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow

OTHER_FORCING = FORCING + "3,12.5\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("edit-rerun")
    for server in _server(tmp, {}):
        assert server.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        server.add_user("carol")
        (tmp / "forcing.csv").write_text(FORCING)
        (tmp / "other.csv").write_text(OTHER_FORCING)
        yield server


def post_run(srv: Server, user: str = "admin", forcing: str = FORCING, **fields: object) -> dict:  # type: ignore[type-arg]
    data = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in fields.items()}
    with srv.http(user) as api:
        answer = api.post(
            "/runs", data=data, files={"inputs.forcing": ("forcing.csv", forcing.encode())}
        )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_labels_and_warnings_are_kept_and_editable(srv: Server) -> None:
    created = post_run(
        srv, model="toy", params={"days": 1, "albedo": 0.5}, name="first try",
        notes="high albedo on purpose", tags=["calibration", "drought"],
    )  # fmt: skip
    run_id = created["id"]
    with srv.http() as api:
        run = api.get(f"/runs/{run_id}").json()
        assert run["name"] == "first try"
        assert run["notes"] == "high albedo on purpose"
        assert run["tags"] == ["calibration", "drought"]
        # The soft-limit warning given at creation is still there when the run is read.
        assert [w["field"] for w in run["warnings"]] == ["params.albedo"]
        assert run["warnings"] == created["warnings"]

        changed = api.patch(f"/runs/{run_id}", json={"name": "calibrated", "tags": ["final"]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["name"] == "calibrated"
        assert changed.json()["notes"] == "high albedo on purpose"  # left out: unchanged
        assert api.get(f"/runs/{run_id}").json()["tags"] == ["final"]

        bad = api.patch(f"/runs/{run_id}", json={"tags": ["two words"], "owner": "x"})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"owner"}
        bad = api.patch(f"/runs/{run_id}", json={"tags": ["two words"], "name": "x" * 201})
        assert {e["field"] for e in bad.json()["errors"]} == {"tags", "name"}
        # A name goes into email subjects: one line, no control characters.
        bad = api.patch(f"/runs/{run_id}", json={"name": "a\r\nBcc: x@example.org"})
        assert bad.status_code == 422
        assert bad.json()["errors"] == [
            {"field": "name", "message": "one line of at most 200 characters"}
        ]
    with srv.http("carol") as other:
        assert other.patch(f"/runs/{run_id}", json={"name": "mine"}).status_code == 404
    srv.wait_for_run(run_id)


def test_a_run_edited_from_another_keeps_what_is_not_changed(srv: Server) -> None:
    source = post_run(srv, model="toy", params={"days": 2, "site": "North"})
    source_id = source["id"]
    srv.wait_for_run(source_id)
    with srv.http() as api:
        # JSON: only what changes; the model, other parameters and the input come along.
        edited = api.post("/runs", json={"from_run": source_id, "params": {"days": 3}})
        assert edited.status_code == 201, edited.text
        run = srv.wait_for_run(edited.json()["id"])
        assert run["state"] == "succeeded"
        assert run["model"] == "toy"
        assert run["params"]["days"] == 3
        assert run["params"]["site"] == "North"
        assert run["rerun_of"] == source_id
        crate = api.get(f"/runs/{run['id']}/provenance").json()["@graph"]
        (forcing,) = [e for e in crate if str(e["@id"]).endswith("/inputs/forcing")]
        assert forcing["sha256"] == hashlib.sha256(FORCING.encode()).hexdigest()

        # A refused edit names the field and creates nothing.
        refused = api.post("/runs", json={"from_run": source_id, "params": {"days": 0}})
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["params.days"]
        missing = api.post("/runs", json={"from_run": 999999})
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "from_run"
    # Another user's run is not a starting point.
    with srv.http("carol") as other:
        theirs = other.post("/runs", json={"from_run": source_id})
        assert theirs.status_code == 422
        assert theirs.json()["errors"][0]["field"] == "from_run"

    # A form replacing the input: the new file is used, the parameters kept.
    replaced = post_run(srv, forcing=OTHER_FORCING, model="toy", from_run=source_id)
    with srv.http() as api:
        crate = api.get(f"/runs/{replaced['id']}/provenance").json()["@graph"]
    (forcing,) = [e for e in crate if str(e["@id"]).endswith("/inputs/forcing")]
    assert forcing["sha256"] == hashlib.sha256(OTHER_FORCING.encode()).hexdigest()
    assert srv.wait_for_run(replaced["id"])["params"]["site"] == "North"


def test_the_cli_labels_and_edits_runs(srv: Server) -> None:
    forcing = srv.home.parent / "forcing.csv"
    done = srv.cli(
        "run", "toy", "-p", "days=1", "-i", f"forcing={forcing}", "--name", "baseline",
        "--tag", "calibration", "--tag", "v2", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["name"] == "baseline"
    assert first["tags"] == ["calibration", "v2"]
    shown = srv.cli("runs", "show", str(first["id"])).stdout
    assert "name: baseline · tags: calibration, v2" in shown

    # A newer version of the model meanwhile: an edit keeps the version it was run with.
    newer = write_model(srv.home.parent / "toy-0.2", MODEL.replace('"0.1"', '"0.2"'), FILES)
    assert srv.cli("models", "add", newer).returncode == 0
    other = srv.home.parent / "other.csv"
    again = srv.cli(
        "run", "toy", "--from", str(first["id"]), "-p", "days=2", "-i", f"forcing={other}",
        "--wait", "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    edited = json.loads(again.stdout)
    assert edited["params"]["days"] == 2
    assert edited["version"] == "0.1"
    assert edited["rerun_of"] == first["id"]
    assert edited["name"] is None  # labels are the new run's own
    assert Path(other).read_text() == OTHER_FORCING


def test_the_form_without_javascript_edits_a_run(srv: Server) -> None:
    source = post_run(srv, model="toy", params={"days": 2, "site": "South"}, tags=["old"])
    srv.wait_for_run(source["id"])
    with logged_in(srv) as client:
        page = client.get(f"/models/toy/run?from={source['id']}")
        assert page.status_code == 200
        assert f'name="from_run" id="from-run" value="{source["id"]}"' in page.text
        assert 'value="South"' in page.text
        assert "Kept: <strong>forcing.csv</strong>" in page.text
        assert 'value="old"' in page.text  # the tags, to keep or change
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        fields = {"csrf_token": csrf.group(1), "version": "0.1", "params.days": "1",
                  "params.site": "South", "params.albedo": "0.06", "params.pace": "0",
                  "from_run": str(source["id"]), "name": "no js", "tags": "a, b"}  # fmt: skip
        posted = client.post("/models/toy/run", data=fields)
        assert posted.status_code == 303, posted.text
        new_id = int(posted.headers["location"].rsplit("/", 1)[-1])
        # Another user's run, or an id out of range, is no starting point.
        assert client.get("/models/toy/run?from=99999").status_code == 404
        assert client.get(f"/models/toy/run?from={2**40}").status_code == 422
    run = srv.wait_for_run(new_id)
    assert run["state"] == "succeeded"
    assert (run["name"], run["tags"], run["rerun_of"]) == ("no js", ["a", "b"], source["id"])


def test_the_runs_list_finds_runs_by_name_tag_and_parameter(srv: Server) -> None:
    hot = post_run(srv, model="toy", params={"days": 1, "albedo": 0.25}, name="hot lake",
                   tags=["heatwave"])  # fmt: skip
    cold = post_run(srv, model="toy", params={"days": 1, "albedo": 0.02}, tags=["winter"])
    with logged_in(srv) as client:

        def found(q: str) -> set[int]:
            page = client.get("/runs", params={"q": q}).text
            return {int(i) for i in re.findall(r'<a href="/runs/(\d+)">#', page)}

        assert found("albedo>0.2") >= {hot["id"]}
        assert cold["id"] not in found("albedo>0.2")
        assert cold["id"] in found("albedo<0.05")
        assert found("tag:heatwave") == {hot["id"]}
        assert found("hot") == {hot["id"]}  # a word of the name
        assert found("tag:winter albedo<0.05") == {cold["id"]}
        page = client.get("/runs", params={"q": f"#{hot['id']}"}).text
        assert '<span class="run-name">hot lake</span>' in page
        assert '<span class="tag">heatwave</span>' in page
        assert "albedo=0.25" in page  # differs from the default, so shown
        assert "pace=0" not in page  # the default: not shown
    srv.wait_for_run(hot["id"])
    srv.wait_for_run(cold["id"])


def test_the_run_page_shows_the_warnings_it_was_started_with(srv: Server) -> None:
    warned = post_run(srv, model="toy", params={"days": 1, "albedo": 0.5})
    with logged_in(srv) as client:
        page = client.get(f"/runs/{warned['id']}").text
    assert 'id="run-warnings"' in page
    assert "Started with a warning:" in page
    assert "<code>params.albedo</code>" in page
    srv.wait_for_run(warned["id"])
