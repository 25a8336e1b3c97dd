"""The runs list, compare of many runs and the sweep page's results export, over HTTP."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import browser
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lists")
    for srv in _server(tmp, {}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        srv.add_user("bob")
        yield srv


def start(server: Server, user: str = "admin", forcing: str = FORCING, **params: object) -> int:
    with server.http(user) as api:
        answer = api.post(
            "/runs",
            data={"model": "toy", "params": json.dumps(params)},
            files={"inputs.forcing": ("forcing.csv", forcing.encode())},
        )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def cells(page: str, table: str) -> list[list[str]]:
    """The text of each body row's cells of the table with id ``table``."""
    body = re.search(rf'<table[^>]*id="{table}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, f"no table {table}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    strip = lambda html: re.sub(r"<[^>]+>", "", html).strip()  # noqa: E731
    return [[strip(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


def test_compare_of_three_runs_shows_every_value_and_the_two_run_url_still_works(
    toy_server: Server,
) -> None:
    ids = [
        start(toy_server, days=1, albedo=0.1),
        start(toy_server, days=1, albedo=0.2),
        start(toy_server, days=2, albedo=0.1, forcing=FORCING + "3,12.5\n"),
    ]
    for run_id in ids:
        assert toy_server.wait_for_run(run_id)["state"] == "succeeded"
    with browser(toy_server) as client:
        page = client.get("/compare", params=[("run", str(i)) for i in ids])
        assert page.status_code == 200, page.text
        assert "Compare 3 runs" in page.text
        params = {row[0]: row[1:] for row in cells(page.text, "param-diff")}
        assert params["albedo"] == ["0.1", "0.2", "0.1", "changed"]
        assert params["days"] == ["1", "1", "2", "changed"]
        assert params["site"][-1] == ""  # the same everywhere: not marked
        # the values unlike the first run's are highlighted
        assert len(re.findall(r'<td class="differs">0.2</td>', page.text)) == 1
        assert "1 of 1 inputs differ" in page.text
        metrics = {row[0]: row[1:] for row in cells(page.text, "metrics-compare")}
        assert metrics["total"] == ["10", "10", "20", "10"]  # spread max - min
        # the same with the ids in one field, as the compare form sends them
        again = client.get("/compare", params={"run": f"{ids[0]}, {ids[1]}, {ids[2]}"})
        assert cells(again.text, "param-diff") == cells(page.text, "param-diff")

        two = client.get(f"/compare?a={ids[0]}&b={ids[1]}")
        assert two.status_code == 200
        assert f'Compare run <a href="/runs/{ids[0]}">#{ids[0]}</a> with' in two.text
        assert "Difference (#" in two.text

        too_many = client.get("/compare", params={"run": ",".join(str(i) for i in range(1, 12))})
        assert too_many.status_code == 400
        assert "At most 10 runs can be compared at once; 11 were chosen." in too_many.text
        assert client.get("/compare?run=1,x").status_code == 400
    # another user's run is not there to compare: 404, never a peek at its values
    theirs = start(toy_server, "bob", days=1)
    with browser(toy_server) as admin, browser(toy_server, "bob") as bob:
        assert bob.get(f"/compare?run={theirs},{ids[0]}").status_code == 404
        assert admin.get(f"/compare?run={theirs},{ids[0]}").status_code == 200


def test_the_runs_list_offers_compare_columns_and_shows_notes(toy_server: Server) -> None:
    run_id = start(toy_server, days=1)
    toy_server.wait_for_run(run_id)
    with toy_server.http() as api:
        changed = api.patch(f"/runs/{run_id}", json={"name": "dry spell", "notes": "try 2"})
        assert changed.status_code == 200, changed.text
    with browser(toy_server) as client:
        page = client.get("/runs").text
    assert f'<input type="checkbox" name="run" value="{run_id}" form="compare-form"' in page
    assert '<form id="compare-form" method="get" action="/compare">' in page
    assert '<span class="run-name" title="try 2">dry spell</span>' in page
    assert 'data-col="param:albedo"' in page
    assert 'data-col="metric:total"' in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z"', page)


def test_a_sweep_page_tells_warnings_and_exports_its_results_as_csv(toy_server: Server) -> None:
    with toy_server.http() as api:
        answer = api.post(
            "/sweeps",
            data={"model": "toy", "params": json.dumps({"days": 1}),
                  "axes": json.dumps({"albedo": [0.1, 0.35]}), "mode": "grid"},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        sweep = answer.json()
        ids = [run["id"] for run in sweep["runs"]]
        for run_id in ids:
            toy_server.wait_for_run(run_id)
        with browser(toy_server) as client:
            page = client.get(f"/sweeps/{sweep['id']}").text
            warnings = re.search(r'<div class="warning" id="sweep-warnings".*?</div>', page, re.S)
            assert warnings, "the sweep page shows no warnings"
            told = re.sub(r"<[^>]+>", "", warnings.group(0))
            assert "albedo: 0.35 is above the usual maximum 0.3 (allowed)" in told
            assert f"run #{ids[1]}" in told
            assert f"#{ids[0]}" not in told
            assert "2 of 2 runs ended · 100 %" in page

            exported = client.get(f"/sweeps/{sweep['id']}/results.csv")
            assert exported.status_code == 200
            assert exported.headers["content-type"].startswith("text/csv")
            assert "attachment" in exported.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(exported.text)))
            assert rows[0] == ["run", "name", "state", "days", "albedo", "site", "pace", "total"]
            assert rows[1:] == [
                [str(ids[0]), "", "succeeded", "1", "0.1", "A B", "0.0", "10"],
                [str(ids[1]), "", "succeeded", "1", "0.35", "A B", "0.0", "10"],
            ]
        # the export is the sweep's: another user gets 404, a stranger the login page
        with browser(toy_server, "bob") as bob:
            assert bob.get(f"/sweeps/{sweep['id']}/results.csv").status_code == 404
        anonymous = httpx.get(f"{toy_server.url}/sweeps/{sweep['id']}/results.csv")
        assert anonymous.status_code == 303
        assert "/login" in anonymous.headers["location"]
