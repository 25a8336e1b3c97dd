"""Real programs as they are, seen through the server: API, run JSON, CLI and the run page."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel, write_model
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
    warning_patterns: ["^ ?\\\\*WARNING"]
"""

END_SH = """echo "starting $1"
case "$1" in
  warn) echo "*WARNING in calinput: no material"; echo "done" ;;
  exit201) exit 201 ;;
  sigkill) kill -KILL $$ ;;
esac
"""


FOAM = """simyard: 1
name: foam
version: "1"
parameters:
  end_time: {type: integer, default: 150}
tasks:
  solve:
    command: [sh, solve.sh, "{end_time}"]
    outputs: ["{end_time}/", postProcessing/]
    success_requires: ["{end_time}/U"]
results:
  plots:
    - {title: Drag, file: "postProcessing/forceCoeffs/*/coefficient.csv", x: Time, y: [Cd]}
"""

FOAM_SH = """for t in 0 20 100 "$1"; do
  mkdir -p "postProcessing/forceCoeffs/$t"
  printf 'Time,Cd\\n%s,1\\n' "$t" > "postProcessing/forceCoeffs/$t/coefficient.csv"
done
mkdir -p "$1" && echo "uniform (1 0 0)" > "$1/U"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module with the real-program models registered."""
    tmp = tmp_path_factory.mktemp("real")
    for srv in _server(tmp, {}):
        done = srv.cli("models", "add", write_model(tmp / "endings", ENDINGS, {"end.sh": END_SH}))
        assert done.returncode == 0, done.stdout + done.stderr
        done = srv.cli("models", "add", write_model(tmp / "foam", FOAM, {"solve.sh": FOAM_SH}))
        assert done.returncode == 0, done.stdout + done.stderr
        yield srv


@pytest.mark.chaos
def test_exit_201_and_sigkill_are_told_apart_in_the_api_the_cli_and_the_page(
    server: Server, process_watch: Callable[..., ProcessWatch]
) -> None:
    watch = process_watch(server.work_root)
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
    ids = [exited["id"], killed["id"]]
    assert_clean_outcome(
        server, ids, watch, kills=False, states=dict.fromkeys(ids, "failed"),
        outputs=NotApplicable("the model writes no output"),
        smtp=NotApplicable("no SMTP server in this scenario"),
    )  # fmt: skip


def test_a_plot_glob_and_placeholders_name_the_run_s_own_files(server: Server) -> None:
    done = server.cli("run", "foam", "-p", "end_time=150", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    paths = {o["path"] for o in run["outputs"]}
    assert "150/U" in paths  # outputs: ["{end_time}/"], success_requires: ["{end_time}/U"]
    with browser_of(server, "admin") as page:
        html = page.get(f"/runs/{run['id']}").text
    # the chart reads the last time folder in natural order: 150, not 100 (as text sorts)
    assert '"file": "postProcessing/forceCoeffs/150/coefficient.csv"' in html


def test_warning_lines_show_in_the_api_the_cli_and_the_page(server: Server) -> None:
    done = server.cli("run", "endings", "-p", "how=warn", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["tasks"][0]["warnings"] == ["*WARNING in calinput: no material"]
    shown = server.cli("runs", "show", str(run["id"])).stdout
    assert "warning: *WARNING in calinput: no material" in shown
    with browser_of(server, "admin") as page:
        html = page.get(f"/runs/{run['id']}").text
    assert '<pre class="warning-lines">*WARNING in calinput: no material</pre>' in html


def test_models_check_warns_about_a_program_this_machine_does_not_have(
    server: Server, make_model: MakeModel
) -> None:
    body = (
        'simyard: 1\nname: solvers\nversion: "1"\ntasks:\n'
        "  mesh:\n    command: [sh, -c, 'true']\n"
        "  solve:\n    command: [simpleFoamNotInstalled, -case, .]\n"
    )
    done = server.cli("models", "check", make_model(body))
    assert done.returncode == 0, done.stderr  # a warning: the workers may have it
    assert "! tasks.solve.command[0]: 'simpleFoamNotInstalled' is not on this machine's PATH" in (
        done.stderr
    )
    assert "tasks.mesh" not in done.stderr


def test_models_init_proposes_typed_parameters_from_a_namelist_and_check_accepts_it(
    server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "Lake Model"
    folder.mkdir()
    (folder / "input.nml").write_text(
        "&lake_params\n  days = 30\n  dt = 0.5\n  station = 'ABC'\n  verbose = .true.\n/\n"
    )
    (folder / "run.sh").write_text("#!/bin/sh\ncat input.nml\n")
    (folder / "run.sh").chmod(0o755)
    done = server.cli("models", "init", folder)
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load((folder / "simyard.yaml").read_text())
    assert manifest["name"] == "lake-model"
    assert manifest["parameters"] == {
        "days": {"type": "integer", "default": 30},
        "dt": {"type": "number", "default": 0.5},
        "station": {"type": "string", "default": "ABC"},
        "verbose": {"type": "boolean", "default": True},
    }
    assert manifest["parameter_file"] == {
        "path": "input.nml", "format": "namelist", "group": "lake_params"
    }  # fmt: skip
    assert manifest["tasks"]["run"]["command"] == ["./run.sh", "input.nml"]
    assert server.cli("models", "check", folder).returncode == 0
    again = server.cli("models", "init", folder)
    assert again.returncode == 1
    assert "exists already" in again.stderr
