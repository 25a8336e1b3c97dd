"""A live follower of a flooded log gets the log's real last lines, like the stored log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

FLOOD_MODEL = """\
simyard: 1
name: flood
version: "1"
tasks:
  flood:
    command: [python3, flood.py]
"""

# 50 MiB as fast as Python writes it: the live copy's 1 MiB cap and the per-batch line
# limit both cut it; the last line comes after all of it.
FLOOD_FILES = {
    "flood.py": """\
        import sys
        line = "x" * 99 + "\\n"
        for i in range(500_000):
            sys.stdout.write(line)
        print("THE LAST LINE of the flood")
    """,
}


@pytest.fixture
def small_log_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {"SIMYARD_MAX_LOG_SIZE": "1MiB"})


def follow(server: Server, run_id: int, task: str) -> tuple[list[str], str]:
    """Every ``data:`` line of the follow stream, and the final state its end event gave."""
    lines: list[str] = []
    with (
        server.http() as api,
        api.stream("GET", f"/runs/{run_id}/logs/{task}/follow", timeout=120) as answer,
    ):
        assert answer.status_code == 200
        event = None
        for raw in answer.iter_lines():
            if raw.startswith("event: "):
                event = raw.removeprefix("event: ")
            elif raw.startswith("data: "):
                if event == "end":
                    return lines, json.loads(raw.removeprefix("data: "))
                if event is None:
                    lines.append(json.loads(raw.removeprefix("data: ")))
            elif raw == "":
                event = None
    raise AssertionError("the follow stream ended without its end event")


def test_a_follower_of_a_flood_gets_the_logs_last_line(
    small_log_server: Server, make_model: MakeModel, process_watch: Callable[..., ProcessWatch]
) -> None:
    server = small_log_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(FLOOD_MODEL, FLOOD_FILES)).returncode == 0
    run_id = json.loads(server.cli("run", "flood", "--json").stdout)["id"]
    lines, state = follow(server, run_id, "flood")
    assert state == "succeeded"
    assert lines[-1] == "THE LAST LINE of the flood"
    skipped = [line for line in lines if "not shown live" in line]
    assert len(skipped) == 1
    found = re.search(r"\[simyard: (\d+) bytes of the log not shown live", skipped[0])
    assert found is not None
    assert int(found.group(1)) > 40 * 2**20  # most of the 50 MiB; the stored log kept 1 MiB
    with server.http() as api:
        stored = api.get(f"/runs/{run_id}/logs/flood", params={"offset": 0, "length": 2**21})
    assert stored.text.rstrip().endswith("THE LAST LINE of the flood")
    assert_clean_outcome(
        server, [run_id], watch, kills=False, states={run_id: "succeeded"},
        outputs=NotApplicable("the model writes no output (its log is checked above)"),
        smtp=NotApplicable("no SMTP server in this scenario"),
    )  # fmt: skip
