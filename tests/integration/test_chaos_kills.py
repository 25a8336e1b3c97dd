"""kill -9 of one process of a running attempt, from outside, with the server alive: the
executor's attempt child, the wrapper around the model (the exit reporter), the model.

Each ends its run final with its reason, and the chaos checker finds nothing left behind:
no attempt beside another, no process, no folder, no half-written output, one email.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.chaos import ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, free_port
from tests.integration.test_notify import Smtp, notify_server

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

STEADY = """\
simyard: 1
name: steady
version: "1"
tasks:
  work:
    command: [python3, steady.py]
    outputs: [done.txt]
"""
STEADY_FILES = {
    "steady.py": """\
        import time
        print("working", flush=True)
        time.sleep(3)
        open("done.txt", "w").write("done once")
    """,
}


@pytest.fixture
def mail_server(tmp_path: Path, make_model: MakeModel) -> Iterator[tuple[Server, Smtp]]:
    """A server that mails each final state to a real SMTP server.

    Sandboxed only: unsandboxed, the model runs as its own uid and must reach the program,
    which a Python installed in root's home is not (simyard.engine.hostuser)."""
    smtp = Smtp(free_port())
    smtp.start()
    gen = notify_server(tmp_path, smtp.port, SIMYARD_SANDBOX="bwrap")
    server = next(gen)
    assert server.cli("models", "add", make_model(STEADY, STEADY_FILES)).returncode == 0
    yield server, smtp
    for _ in gen:
        pass
    smtp.stop()


def attempt_chain(server: Server, timeout: float = 60) -> list[psutil.Process]:
    """The running model and its ancestors up to the server's child: [model, wrapper, ...,
    the executor's attempt child, the forkserver]."""
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            argv = proc.info["cmdline"] or []
            if argv[1:2] == ["steady.py"] and Path(argv[0]).name.startswith("python"):
                chain = [proc]
                with_parents = [*proc.parents()]
                for parent in with_parents:
                    if parent.pid == server.process.pid:
                        return chain
                    chain.append(parent)
        time.sleep(0.05)
    raise AssertionError("the model never ran")


def kill_and_finish(server: Server, pick: Callable[[list[psutil.Process]], psutil.Process]) -> int:
    """Start a run, kill -9 the process ``pick`` chooses from its attempt's chain; its id."""
    done = server.cli("run", "steady", "--json")
    assert done.returncode == 0, done.stderr
    run_id = int(json.loads(done.stdout)["id"])
    chain = attempt_chain(server)
    os.kill(pick(chain).pid, signal.SIGKILL)
    return run_id


def attempt_child(chain: list[psutil.Process]) -> psutil.Process:
    return chain[-2]  # the forkserver's child: the executor's process for this attempt


def wrapper(chain: list[psutil.Process]) -> psutil.Process:
    return chain[1]  # the model's parent: the exit reporter


def model(chain: list[psutil.Process]) -> psutil.Process:
    return chain[0]


def done_once(run: dict[str, object]) -> dict[str, bytes]:
    return {"work/done.txt": b"done once"}


def test_a_killed_attempt_child_is_retried_with_nothing_left(
    mail_server: tuple[Server, Smtp], process_watch: Callable[..., ProcessWatch]
) -> None:
    server, smtp = mail_server
    watch = process_watch(server.work_root)
    run_id = kill_and_finish(server, attempt_child)
    runs = assert_clean_outcome(server, [run_id], watch, kills=False, outputs=done_once,
                                smtp=smtp, states={run_id: "succeeded"})  # fmt: skip
    assert runs[run_id]["tasks"][0]["attempt"] == 2  # lost, then run again
    assert (run_id, "work", 1) in watch.seen


def test_a_killed_wrapper_ends_the_attempt_with_its_reason(
    mail_server: tuple[Server, Smtp], process_watch: Callable[..., ProcessWatch]
) -> None:
    server, smtp = mail_server
    watch = process_watch(server.work_root)
    run_id = kill_and_finish(server, wrapper)
    runs = assert_clean_outcome(server, [run_id], watch, kills=False, outputs=done_once,
                                smtp=smtp, states={run_id: "failed"})  # fmt: skip
    # The model dies with its wrapper (the sandbox's process namespace ends with it).
    assert "killed by SIGKILL" in runs[run_id]["error"]["summary"], runs[run_id]["error"]


def test_a_model_killed_from_outside_fails_saying_so(
    mail_server: tuple[Server, Smtp], process_watch: Callable[..., ProcessWatch]
) -> None:
    server, smtp = mail_server
    watch = process_watch(server.work_root)
    run_id = kill_and_finish(server, model)
    runs = assert_clean_outcome(server, [run_id], watch, kills=False, outputs=done_once,
                                smtp=smtp, states={run_id: "failed"})  # fmt: skip
    assert "killed by SIGKILL" in runs[run_id]["error"]["summary"], runs[run_id]["error"]
