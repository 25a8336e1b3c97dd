"""Who may do what to a run: owner, a user it is shared with, every signed-in user, a
project member, a non-member, an admin — over the HTTP API of a real server. Readers
read (page data, logs, outputs, provenance) and nothing more; strangers are told nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server, logged_in
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow

USERS = ("alice", "bob", "carol", "dave")
READS = ("", "/logs/simulate", "/outputs", "/provenance", "/outputs.zip")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("sharing")
    for server in _server(tmp, {}):
        assert server.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        for name in USERS:
            server.add_user(name)
        yield server


def start(srv: Server, user: str = "alice", **fields: Any) -> dict[str, Any]:
    data = {"model": "toy", "params": json.dumps(fields.pop("params", {"days": 1}))}
    data |= {k: str(v) for k, v in fields.items()}
    with srv.http(user) as api:
        answer = api.post(
            "/runs", data=data, files={"inputs.forcing": ("forcing.csv", FORCING.encode())}
        )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def status_of(srv: Server, user: str, method: str, path: str, **kwargs: Any) -> int:
    with srv.http(user) as api:
        return api.request(method, path, **kwargs).status_code


@pytest.fixture(scope="module")
def runs(srv: Server) -> dict[str, int]:
    """alice's runs: one shared with bob, one with everyone, one in project ocean (alice
    and carol), one not shared at all; each finished."""
    with srv.http("admin") as api:
        made = api.post("/projects", json={"name": "ocean", "members": ["alice", "carol"]})
        assert made.status_code == 201, made.text
        assert made.json()["members"] == ["alice", "carol"]
    ids = {
        "user": start(srv)["id"],
        "everyone": start(srv)["id"],
        "project": start(srv, project="ocean")["id"],
        "private": start(srv)["id"],
    }
    with srv.http("alice") as api:
        shared = api.post(f"/runs/{ids['user']}/shares", json={"user": "bob"})
        assert shared.status_code == 201, shared.text
        assert [(s["user"], s["everyone"]) for s in shared.json()] == [("bob", False)]
        shared = api.post(f"/runs/{ids['everyone']}/shares", json={"everyone": True})
        assert [(s["user"], s["everyone"]) for s in shared.json()] == [(None, True)]
        assert api.get(f"/runs/{ids['project']}").json()["project"] == "ocean"
    for run_id in ids.values():
        assert srv.wait_for_run(run_id)["state"] == "succeeded"
    return ids


# who reads which run: (user, run) -> True (reads), False (told nothing: 404)
def readers(runs: dict[str, int]) -> dict[tuple[str, str], bool]:
    return {
        ("alice", "user"): True, ("bob", "user"): True, ("carol", "user"): False,
        ("dave", "user"): False, ("admin", "user"): True,
        ("alice", "everyone"): True, ("bob", "everyone"): True, ("carol", "everyone"): True,
        ("dave", "everyone"): True, ("admin", "everyone"): True,
        ("alice", "project"): True, ("bob", "project"): False, ("carol", "project"): True,
        ("dave", "project"): False, ("admin", "project"): True,
        ("alice", "private"): True, ("bob", "private"): False, ("carol", "private"): False,
        ("dave", "private"): False, ("admin", "private"): True,
    }  # fmt: skip


def test_readers_read_every_part_of_a_run_and_others_get_404(
    srv: Server, runs: dict[str, int]
) -> None:
    for (user, which), reads in readers(runs).items():
        for part in READS:
            path = f"/runs/{runs[which]}{part}"
            assert status_of(srv, user, "GET", path) == (200 if reads else 404), (user, path)


def test_readers_may_not_cancel_rerun_relabel_or_share_and_strangers_get_404(
    srv: Server, runs: dict[str, int]
) -> None:
    writes = [
        ("POST", "/cancel", {}),
        ("POST", "/rerun", {}),
        ("PATCH", "", {"json": {"name": "mine now"}}),
        ("GET", "/shares", {}),
        ("POST", "/shares", {"json": {"user": "dave"}}),
        ("POST", "/shares", {"json": {"everyone": True}}),
        ("DELETE", "/shares", {"json": {"user": "bob"}}),
        ("DELETE", "/shares?everyone=true", {}),
    ]
    for (user, which), reads in readers(runs).items():
        if user in ("alice", "admin"):
            continue
        for method, part, kwargs in writes:
            path = f"/runs/{runs[which]}{part}"
            got = status_of(srv, user, method, path, **kwargs)
            assert got == (403 if reads else 404), (user, method, path, got)
    with srv.http("bob") as api:
        refused = api.post(f"/runs/{runs['user']}/cancel")
        assert "read-only" in refused.json()["detail"]
        assert "shared with you by alice" in refused.json()["detail"]
        # Nothing changed: the share is still there, the name is not bob's.
        assert api.get(f"/runs/{runs['user']}").json()["name"] is None
    with srv.http("alice") as api:
        assert [s["user"] for s in api.get(f"/runs/{runs['user']}/shares").json()] == ["bob"]
        assert len(api.get("/runs").json()) >= 4  # no rerun was made for alice either
    with srv.http("bob") as api:
        assert api.get("/runs").json() == []  # bob's own runs: none was made by his reruns


def test_a_reader_cannot_edit_and_rerun_from_a_shared_run(
    srv: Server, runs: dict[str, int]
) -> None:
    with srv.http("bob") as api:
        answer = api.post("/runs", json={"from_run": runs["user"]})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["from_run"]


def test_the_owner_and_an_admin_change_shares_and_labels(srv: Server, runs: dict[str, int]) -> None:
    run_id = runs["private"]
    with srv.http("admin") as api:
        assert api.post(f"/runs/{run_id}/shares", json={"user": "dave"}).status_code == 201
    assert status_of(srv, "dave", "GET", f"/runs/{run_id}") == 200
    with srv.http("alice") as api:
        # Sharing twice changes nothing; an unknown user is a 422 naming the field.
        again = api.post(f"/runs/{run_id}/shares", json={"user": "dave"})
        assert [s["user"] for s in again.json()] == ["dave"]
        unknown = api.post(f"/runs/{run_id}/shares", json={"user": "nobody"})
        assert unknown.status_code == 422
        assert unknown.json()["errors"] == [{"field": "user", "message": "no user 'nobody'"}]
        assert api.post(f"/runs/{run_id}/shares", json={}).json()["errors"][0]["field"] == "user"
        assert api.patch(f"/runs/{run_id}", json={"name": "private"}).status_code == 200
        gone = api.request("DELETE", f"/runs/{run_id}/shares", json={"user": "dave"})
        assert gone.status_code == 200
        assert gone.json() == []
    assert status_of(srv, "dave", "GET", f"/runs/{run_id}") == 404


def test_shared_and_project_runs_are_listed_on_request(srv: Server, runs: dict[str, int]) -> None:
    def ids(user: str, query: str) -> set[int]:
        with srv.http(user) as api:
            answer = api.get(f"/runs?{query}")
            assert answer.status_code == 200, answer.text
            return {r["id"] for r in answer.json()}

    assert ids("bob", "shared=1") == {runs["user"], runs["everyone"]}
    assert ids("dave", "shared=1") == {runs["everyone"]}
    assert ids("carol", "shared=1") == {runs["everyone"], runs["project"]}
    assert ids("carol", "project=ocean") == {runs["project"]}
    assert ids("alice", "shared=1") == set()  # her own runs are not "shared with her"
    with srv.http("dave") as api:
        refused = api.get("/runs?project=ocean")
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "project"
        assert api.get("/projects").json() == []
    with srv.http("carol") as api:
        assert [p["name"] for p in api.get("/projects").json()] == ["ocean"]


def test_a_non_member_cannot_start_a_run_in_a_project_and_its_quota_holds(
    srv: Server, runs: dict[str, int]
) -> None:
    with srv.http("dave") as api:
        answer = api.post(
            "/runs",
            data={"model": "toy", "project": "ocean"},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["project"]
        assert api.post("/projects", json={"name": "mine"}).status_code == 403
        assert api.post("/projects/ocean/members", json={"user": "dave"}).status_code == 403
    with srv.http("admin") as api:
        assert api.patch("/projects/ocean", json={"max_active_runs": 1}).status_code == 200
        bad = api.patch("/projects/ocean", json={"max_active_runs": 0})
        assert bad.json()["errors"][0]["field"] == "max_active_runs"
        unknown = api.post("/projects/ocean/members", json={"user": "nobody"})
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "user"
    slow = start(srv, "carol", project="ocean", params={"days": 30, "pace": 0.2})
    with srv.http("carol") as api:
        answer = api.post(
            "/runs",
            data={"model": "toy", "project": "ocean"},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "project"
        assert "at most 1 at once" in answer.json()["errors"][0]["message"]
    # alice reads carol's project run, and may not cancel it.
    assert status_of(srv, "alice", "GET", f"/runs/{slow['id']}") == 200
    assert status_of(srv, "alice", "POST", f"/runs/{slow['id']}/cancel") == 403
    assert status_of(srv, "carol", "POST", f"/runs/{slow['id']}/cancel") == 200
    srv.wait_for_run(slow["id"])
    with srv.http("admin") as api:
        assert api.patch("/projects/ocean", json={"max_active_runs": None}).status_code == 200
        removed = api.delete("/projects/ocean/members/carol")
        assert removed.json()["members"] == ["alice"]
    assert status_of(srv, "carol", "GET", f"/runs/{runs['project']}") == 404
    with srv.http("admin") as api:
        assert api.post("/projects/ocean/members", json={"user": "carol"}).status_code == 200


def test_a_shared_sweep_is_read_only_with_its_runs(srv: Server, tmp_path: Path) -> None:
    with srv.http("alice") as api:
        made = api.post(
            "/sweeps",
            data={"model": "toy", "params": json.dumps({"days": 25, "pace": 0.2}),
                  "axes": json.dumps({"albedo": [0.1, 0.2]})},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        sweep = made.json()
        assert api.post(f"/sweeps/{sweep['id']}/shares", json={"user": "bob"}).status_code == 201
    run_id = sweep["runs"][0]["id"]
    assert status_of(srv, "bob", "GET", f"/sweeps/{sweep['id']}") == 200
    assert status_of(srv, "bob", "GET", f"/runs/{run_id}") == 200
    assert status_of(srv, "bob", "POST", f"/sweeps/{sweep['id']}/cancel") == 403
    assert status_of(srv, "bob", "POST", f"/runs/{run_id}/cancel") == 403
    assert (
        status_of(srv, "bob", "POST", f"/sweeps/{sweep['id']}/shares", json={"user": "dave"}) == 403
    )
    assert status_of(srv, "dave", "GET", f"/sweeps/{sweep['id']}") == 404
    assert status_of(srv, "dave", "GET", f"/runs/{run_id}") == 404
    assert (
        status_of(srv, "dave", "POST", f"/sweeps/{sweep['id']}/shares", json={"user": "dave"})
        == 404
    )
    with srv.http("bob") as api:
        assert [s["id"] for s in api.get("/sweeps?shared=1").json()] == [sweep["id"]]
    with logged_in(srv, "bob") as web:  # nor through the sweep page's Cancel form
        page = web.get(f"/sweeps/{sweep['id']}")
        assert page.status_code == 200
        assert "This sweep is shared with you by alice, read-only" in page.text
        assert "Cancel sweep" not in page.text
        assert f"run?from={run_id}" not in page.text  # no edit and rerun for a reader
        form = {"csrf_token": csrf_of(page.text)}
        assert web.post(f"/sweeps/{sweep['id']}/cancel", data=form).status_code == 403
        assert web.post(f"/runs/{run_id}/shares", data=form | {"user": "dave"}).status_code == 403
    with logged_in(srv, "alice") as web:  # the owner edits and reruns any run of it
        page = web.get(f"/sweeps/{sweep['id']}").text
        for run in sweep["runs"]:
            assert f'href="/models/toy/run?from={run["id"]}"' in page
    with srv.http("alice") as api:
        assert all(
            r["state"] != "cancelled" for r in api.get(f"/sweeps/{sweep['id']}").json()["runs"]
        )
    with srv.http("alice") as api:
        gone = api.delete(f"/sweeps/{sweep['id']}/shares?user=bob")
        assert gone.status_code == 200
        assert gone.json() == []
    assert status_of(srv, "bob", "GET", f"/sweeps/{sweep['id']}") == 404
    for run in sweep["runs"]:
        srv.wait_for_run(run["id"])


def test_the_owner_shares_a_sweep_from_its_page_and_a_reader_may_not(srv: Server) -> None:
    with srv.http("alice") as api:
        made = api.post(
            "/sweeps",
            data={"model": "toy", "params": json.dumps({"days": 1}),
                  "axes": json.dumps({"albedo": [0.1, 0.2]})},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )  # fmt: skip
        assert made.status_code == 201, made.text
    sweep_id = made.json()["id"]
    page_of = f"/sweeps/{sweep_id}"
    assert status_of(srv, "dave", "GET", page_of) == 404
    with logged_in(srv, "alice") as web:
        page = web.get(page_of)
        assert 'id="shares"' in page.text
        assert f'action="{page_of}/shares"' in page.text
        assert "only its owner and the admins can see this sweep" in page.text
        form = {"csrf_token": csrf_of(page.text)}
        assert web.post(f"{page_of}/shares", data={"user": "dave"}).status_code == 403  # no CSRF
        shared = web.post(f"{page_of}/shares", data=form | {"user": "dave"})
        assert (shared.status_code, shared.headers["location"]) == (303, f"{page_of}#shares")
        page = web.get(page_of)
        assert "Shared read-only with dave." in page.text
        assert 'aria-label="Unshare with dave"' in page.text
        refused = web.post(f"{page_of}/shares", data=form | {"user": "nobody"})
        assert refused.status_code == 303
        page = web.get(page_of)
        assert re.search(r'id="share-error">no user &#39;nobody&#39;<', page.text), page.text
        assert 'aria-describedby="share-error"' in page.text  # the user field is the one refused
    with srv.http("alice") as api:
        assert (
            api.post(f"{page_of}/shares", json={"user": "nobody"}).json()["errors"][0]["field"]
            == "user"
        )
        assert [s["user"] for s in api.get(f"{page_of}/shares").json()] == ["dave"]
    with logged_in(srv, "dave") as web:
        page = web.get(page_of)
        assert page.status_code == 200
        assert "This sweep is shared with you by alice, read-only" in page.text
        assert 'id="shares"' not in page.text
        form = {"csrf_token": csrf_of(page.text)}
        assert web.post(f"{page_of}/shares", data=form | {"user": "carol"}).status_code == 403
        gone = web.post(f"{page_of}/shares/remove", data=form | {"user": "dave"})
        assert gone.status_code == 403
    with logged_in(srv, "alice") as web:
        page = web.get(page_of)
        assert page.status_code == 200, page.text
        form = {"csrf_token": csrf_of(page.text)}
        assert web.post(f"{page_of}/shares/remove", data=form | {"user": "dave"}).status_code == 303
        assert "No longer shared with dave." in web.get(page_of).text
    assert status_of(srv, "dave", "GET", page_of) == 404
    for run in made.json()["runs"]:
        srv.wait_for_run(run["id"])


def test_the_runs_page_lists_shared_and_project_runs_marked_read_only(
    srv: Server, runs: dict[str, int]
) -> None:
    def listed(user: str, show: str) -> tuple[set[int], str]:
        with logged_in(srv, user) as web:
            page = web.get("/runs", params={"show": show})
            assert page.status_code == 200
            return {int(i) for i in re.findall(r'data-run="(\d+)"', page.text)}, page.text

    ids, text = listed("bob", "shared")
    assert ids == {runs["user"], runs["everyone"]}
    assert "Runs shared with me" in text
    assert "read-only" in text
    assert listed("bob", "")[0] == set()  # his own: none
    ids, text = listed("carol", "project:ocean")
    assert runs["project"] in ids
    assert "Runs of project ocean" in text
    assert listed("dave", "project:ocean")[0] == set()  # not a member: nothing shown
    assert listed("dave", "shared")[0] == {runs["everyone"]}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def test_the_admin_manages_projects_on_the_projects_page(srv: Server, runs: dict[str, int]) -> None:
    with logged_in(srv, "admin") as web:
        page = web.get("/admin/projects")
        assert page.status_code == 200
        assert 'id="project-ocean"' in page.text
        token = csrf_of(page.text)
        made = web.post("/admin/projects", data={"name": "lake", "max_active_runs": "2",
                                                 "csrf_token": token})  # fmt: skip
        assert made.status_code == 303
        added = web.post("/admin/projects/lake/members", data={"user": "bob", "csrf_token": token})
        assert added.status_code == 303
        page = web.get("/admin/projects")
        assert "bob is a member of lake." in page.text
        lake = page.text.split('id="project-lake"')[1].split("</tr>")[0]
        assert ">bob" in lake.replace("\n", "").replace(" ", "")
        assert 'value="2"' in lake
        refused = web.post("/admin/projects/lake/members", data={"user": "nobody",
                                                                  "csrf_token": token})  # fmt: skip
        assert refused.status_code == 422
        assert "user: no user &#39;nobody&#39;" in refused.text
        twice = web.post("/admin/projects", data={"name": "lake", "csrf_token": token})
        assert twice.status_code == 422
        assert "exists already" in twice.text
        removed = web.post("/admin/projects/lake/members/remove",
                           data={"user": "bob", "csrf_token": token})  # fmt: skip
        assert removed.status_code == 303
    with logged_in(srv, "bob") as web:
        assert web.get("/admin/projects").status_code == 403
        page = web.get("/runs")
        token = csrf_of(page.text) if "csrf_token" in page.text else ""
        forged = web.post("/admin/projects", data={"name": "mine", "csrf_token": token})
        assert forged.status_code == 403


def test_the_new_run_form_offers_the_users_projects(srv: Server, runs: dict[str, int]) -> None:
    with logged_in(srv, "carol") as web:
        page = web.get("/models/toy/run").text
        assert 'id="run-project"' in page
        assert "<option >ocean</option>" in page or "<option>ocean</option>" in page
        form = {"version": "0.1", "params.days": "1", "project": "ocean",
                "csrf_token": csrf_of(page)}  # fmt: skip
        started = web.post("/models/toy/run", data=form,
                           files={"inputs.forcing": ("forcing.csv", FORCING.encode())})  # fmt: skip
        assert started.status_code == 303, started.text
        run_id = int(started.headers["location"].rsplit("/", 1)[1])
    with srv.http("alice") as api:  # a fellow member reads it
        assert api.get(f"/runs/{run_id}").json()["project"] == "ocean"
    with logged_in(srv, "dave") as web:
        page = web.get("/models/toy/run").text
        assert 'id="run-project"' not in page
        form = {"version": "0.1", "params.days": "1", "project": "ocean",
                "csrf_token": csrf_of(page)}  # fmt: skip
        refused = web.post("/models/toy/run", data=form,
                           files={"inputs.forcing": ("forcing.csv", FORCING.encode())})  # fmt: skip
        assert refused.status_code == 422
        assert "you are not a member of a project &#39;ocean&#39;" in refused.text
    srv.wait_for_run(run_id)


def test_the_command_line_shares_lists_and_starts_in_a_project(
    srv: Server, runs: dict[str, int], tmp_path: Path
) -> None:
    run_id = runs["private"]
    done = srv.cli("runs", "share", str(run_id), "carol", user="alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"run {run_id} is shared read-only with: carol"
    listed = srv.cli("runs", "list", "--shared", "--json", user="carol")
    assert run_id in {r["id"] for r in json.loads(listed.stdout)}
    onward = srv.cli("runs", "share", str(run_id), "dave", user="carol")
    assert onward.returncode == 1
    assert "read-only" in onward.stderr
    done = srv.cli("runs", "share", str(run_id), "carol", "--undo", user="alice")
    assert done.stdout.strip() == f"run {run_id} is not shared"
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    started = srv.cli("run", "toy", "-i", f"forcing={forcing}", "--project", "ocean", "--json",
                      user="alice")  # fmt: skip
    assert started.returncode == 0, started.stderr
    created = json.loads(started.stdout)
    assert created["project"] == "ocean"
    refused = srv.cli("run", "toy", "-i", f"forcing={forcing}", "--project", "ocean", user="dave")
    assert refused.returncode == 2
    assert "project: you are not a member of a project 'ocean'" in refused.stderr
    srv.wait_for_run(created["id"])


def test_a_disabled_user_is_not_shared_with_but_can_be_unshared(
    srv: Server, runs: dict[str, int]
) -> None:
    srv.add_user("erin")
    run_id = runs["private"]
    with srv.http("alice") as api:
        assert api.post(f"/runs/{run_id}/shares", json={"user": "erin"}).status_code == 201
    with logged_in(srv, "admin") as web:
        page = web.get("/admin")
        found = re.search(r'id="user-erin".*?/admin/users/(\d+)/disabled', page.text, re.S)
        assert found
        user_id = found.group(1)
        form = {"disabled": "true", "runs": "leave", "csrf_token": csrf_of(page.text)}
        assert web.post(f"/admin/users/{user_id}/disabled", data=form).status_code == 303
    with srv.http("alice") as api:
        again = api.post(f"/runs/{run_id}/shares", json={"user": "erin"})
        assert again.status_code == 422
        assert again.json()["errors"][0]["field"] == "user"
        gone = api.delete(f"/runs/{run_id}/shares?user=erin")
        assert gone.status_code == 200
        assert gone.json() == []
