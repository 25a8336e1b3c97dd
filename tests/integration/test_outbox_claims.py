"""Email with two servers on one PostgreSQL database, and a server killed while sending."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import _server, free_port
from tests.integration.test_notify import Mailbox, Smtp

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

QUICK = """\
simyard: 1
name: quick
version: "1"
tasks:
  run: {command: [python3, -c, "print('ok')"]}
"""
NO_OUTPUT = NotApplicable("the model writes no output")
WatchFactory = Callable[..., ProcessWatch]
MAIL = {"SIMYARD_SMTP_URL": "", "SIMYARD_MAIL_FROM": "simyard@example.org",
        "SIMYARD_BASE_URL": "http://simyard.example.org"}  # fmt: skip


def message_ids(smtp: Smtp) -> Counter[str]:
    return Counter(str(message["Message-ID"]) for _, message in smtp.box.messages)


def test_two_servers_send_each_email_once(
    tmp_path: Path, postgres_url: str, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    smtp = Smtp(free_port())
    smtp.start()
    shared = {**MAIL, "SIMYARD_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
              "SIMYARD_DATABASE_URL": postgres_url,
              "SIMYARD_STORAGE_URL": f"file://{tmp_path / 'shared-storage'}"}  # fmt: skip
    gens = [_server(tmp_path / "a", shared), _server(tmp_path / "b", shared, add_admin=False)]
    first, second = (next(gen) for gen in gens)
    second.tokens = dict(first.tokens)
    watch = process_watch(first.work_root, second.work_root)
    try:
        assert first.cli("models", "add", make_model(QUICK)).returncode == 0
        ids = []
        for index in range(8):
            done = (first, second)[index % 2].cli("run", "quick", "--json")
            assert done.returncode == 0, done.stderr
            ids.append(json.loads(done.stdout)["id"])
        for run_id in ids:
            assert first.wait_for_run(run_id)["state"] == "succeeded"
        smtp.wait_for(len(ids), timeout=60)
        time.sleep(2)  # both outboxes pass several times: a second copy would be here
        subjects = Counter(str(message["Subject"]) for _, message in smtp.box.messages)
        assert sorted(subjects) == sorted(f"[simyard] quick run {i} succeeded" for i in ids)
        assert set(subjects.values()) == {1}, subjects
        assert set(message_ids(smtp).values()) == {1}
        assert_clean_outcome(
            first, ids, watch, kills=False, outputs=NO_OUTPUT, smtp=smtp,
            also=[second],
        )  # fmt: skip
    finally:
        smtp.stop()
        for gen in reversed(gens):
            for _ in gen:
                pass


class HeldBox(Mailbox):
    """A mailbox that holds back its 250 for the first message until released."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if not self.arrived.is_set():
            self.arrived.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        return answer


@pytest.fixture
def held_smtp() -> Iterator[Smtp]:
    smtp = Smtp(free_port())
    smtp.box = HeldBox()
    smtp.start()
    yield smtp
    assert isinstance(smtp.box, HeldBox)
    smtp.box.release.set()
    smtp.stop()


def test_a_server_killed_before_the_250_sends_again_at_once_with_the_same_message_id(
    tmp_path: Path, held_smtp: Smtp, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    box = held_smtp.box
    assert isinstance(box, HeldBox)
    gen = _server(tmp_path, {**MAIL, "SIMYARD_SMTP_URL": f"smtp://127.0.0.1:{held_smtp.port}"})
    server = next(gen)
    watch = process_watch(server.work_root)
    try:
        assert server.cli("models", "add", make_model(QUICK)).returncode == 0
        done = server.cli("run", "quick", "--wait", "--json")
        run_id = json.loads(done.stdout)["id"]
        assert box.arrived.wait(60), "the message never reached the SMTP server"
        server.stop(signal.SIGKILL)  # killed while the SMTP server holds back its 250
        box.release.set()
        started = time.monotonic()
        server.start()
        held_smtp.wait_for(2, timeout=60)
        # At least once: sent again by the restarted server, well before the dead one's
        # claim would have expired, under the same Message-ID (a receiver can drop it).
        assert time.monotonic() - started < 30
        (only,) = message_ids(held_smtp).items()
        assert only == ("<simyard-delivery-1@simyard>", 2), only
        subjects = {str(m["Subject"]) for _, m in held_smtp.box.messages}
        assert subjects == {f"[simyard] quick run {run_id} succeeded"}
        time.sleep(1.5)
        assert len(held_smtp.box.messages) == 2  # and then never again
        assert_clean_outcome(server, [run_id], watch, kills=True, states={run_id: "succeeded"},
                             outputs=NO_OUTPUT, smtp=held_smtp)  # fmt: skip
    finally:
        for _ in gen:
            pass


STATES = """\
simyard: 1
name: states
version: "1"
parameters:
  end: {type: string, default: ok}
tasks:
  run:
    command: [python3, states.py, "{end}"]
"""
STATES_PY = """\
import sys, time
if sys.argv[1] == "fail":
    sys.exit(3)
if sys.argv[1] == "hang":
    time.sleep(60)
print("ok")
"""


def test_smtp_outage_then_recovery_sends_one_email_per_final_state(
    tmp_path: Path, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    smtp = Smtp(free_port())  # down: nothing listens yet
    gen = _server(tmp_path, {**MAIL, "SIMYARD_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}"})
    server = next(gen)
    watch = process_watch(server.work_root)
    try:
        model = make_model(STATES, {"states.py": STATES_PY})
        assert server.cli("models", "add", model).returncode == 0
        ids = {}
        for end in ("ok", "fail", "hang"):
            done = server.cli("run", "states", "-p", f"end={end}", "--json")
            assert done.returncode == 0, done.stderr
            ids[end] = json.loads(done.stdout)["id"]
        with server.http() as api:
            assert api.post(f"/runs/{ids['hang']}/cancel").status_code == 200
        runs = {end: server.wait_for_run(run_id) for end, run_id in ids.items()}
        assert {end: run["state"] for end, run in runs.items()} == {
            "ok": "succeeded", "fail": "failed", "hang": "cancelled"}  # fmt: skip
        assert runs["fail"]["error"], runs["fail"]  # each final with its reason
        assert runs["hang"]["error"], runs["hang"]
        log = server.home / "server.log"
        deadline = time.monotonic() + 30
        while log.read_text().count("failed (attempt") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # every message has failed at least once
        smtp.start()
        smtp.wait_for(3, timeout=60)
        time.sleep(2)
        subjects = Counter(str(message["Subject"]) for _, message in smtp.box.messages)
        assert subjects == Counter(
            f"[simyard] states run {ids[end]} {state}"
            for end, state in (("ok", "succeeded"), ("fail", "failed"), ("hang", "was cancelled"))
        )
        assert not list((server.home / "work").glob("*/*")), "a working folder was left"
        assert_clean_outcome(
            server, ids.values(), watch, kills=False, outputs=NO_OUTPUT, smtp=smtp,
            states={ids["ok"]: "succeeded", ids["fail"]: "failed", ids["hang"]: "cancelled"},
        )  # fmt: skip
    finally:
        smtp.stop()
        for _ in gen:
            pass
