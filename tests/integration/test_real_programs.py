"""Real programs as they are, seen through the server: API, run JSON, CLI and the run page."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.integration.test_accounts import browser_of

pytestmark = pytest.mark.slow

ENDINGS = """simyard: 1
name: endings
version: "1"
parameters:
  how: {type: string, default: exit201}
tasks:
  run:
    command: [sh, end.sh, "{how}"]
"""

END_SH = """echo "starting $1"
case "$1" in
  exit201) exit 201 ;;
  sigkill) kill -KILL $$ ;;
esac
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module with the real-program models registered."""
    tmp = tmp_path_factory.mktemp("real")
    for srv in _server(tmp, {}):
        done = srv.cli("models", "add", write_model(tmp / "endings", ENDINGS, {"end.sh": END_SH}))
        assert done.returncode == 0, done.stdout + done.stderr
        yield srv


def test_exit_201_and_sigkill_are_told_apart_in_the_api_the_cli_and_the_page(
    server: Server,
) -> None:
    done = server.cli("run", "endings", "-p", "how=exit201", "--wait", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    exited = json.loads(done.stdout)
    assert (exited["tasks"][0]["exit_code"], exited["tasks"][0]["signal"]) == (201, None)
    assert "It exited with code 201." in exited["error"]["summary"]

    done = server.cli("run", "endings", "-p", "how=sigkill", "--wait", "--json")
    killed = json.loads(done.stdout)
    assert (killed["tasks"][0]["exit_code"], killed["tasks"][0]["signal"]) == (None, 9)
    assert "It was killed by SIGKILL." in killed["error"]["summary"]

    shown = server.cli("runs", "show", str(exited["id"])).stdout
    assert "run: failed, exit code 201" in shown
    shown = server.cli("runs", "show", str(killed["id"])).stdout
    assert "run: failed, killed by SIGKILL (signal 9)" in shown

    with browser_of(server, "admin") as page:
        exit_page = page.get(f"/runs/{exited['id']}").text
        kill_page = page.get(f"/runs/{killed['id']}").text
    assert '<td class="exit-code">201</td>' in exit_page
    assert '<td class="exit-code">signal 9</td>' in kill_page
