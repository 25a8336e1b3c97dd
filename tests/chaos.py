"""The chaos suite's one checker (issue 18, item 13): what must hold after any fault.

A scenario starts a :class:`ProcessWatch` on the attempt-folder roots before its fault,
injects the fault, waits for its runs, and calls :func:`assert_clean_outcome`, which
asserts, for every run the scenario made:

(a) the run is final with its reason (a failed, timed-out or cancelled run says why),
    and so is each of its task runs;
(b) no two attempts of one task run overlapped: neither by their recorded start and end
    (the run's events) nor in the process table the watch sampled through the fault;
(c) no orphan process: nothing left with its cwd below an attempt-folder root, nor
    running as one of the server's model uids;
(d) no attempt folder left below an attempt-folder root;
(e) no half-written output: each output of a succeeded run downloads whole (its recorded
    size and sha256, and the bytes the model writes where the scenario knows them), and
    no temporary object is left in the file store's folder;
(f) one email per final state (at least one, all copies one message, when a kill may
    have cut a delivery).

A check that cannot apply to a scenario is passed as :class:`NotApplicable` with the
reason, so that every call says what it leaves out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.integration.conftest import Server
    from tests.integration.test_notify import Smtp

# An attempt's folder: work_root/run{id}/{task}.a{attempt} (simyard.engine.workorder).
ATTEMPT_PATH = re.compile(r"/run(\d+)/([^/]+)\.a(\d+)(?=/|$)")
ATTEMPT_NAME = re.compile(r".+\.a\d+$")
FINAL_RUN_STATES = {"succeeded", "failed", "cancelled", "timed_out"}
FINAL_TASK_STATES = {"succeeded", "failed", "cancelled", "timed_out", "skipped", "cached"}
ATTEMPT_END_EVENTS = {"task.retry", "task.succeeded", "task.failed", "task.cancelled",
                      "task.timed_out"}  # fmt: skip
OUTCOME_WORDS = {"succeeded": "succeeded", "failed": "failed", "timed_out": "timed out",
                 "cancelled": "was cancelled"}  # fmt: skip
SUBJECT = re.compile(r"^\[simyard\] \S+ run (\d+)\b")
SETTLE_SECONDS = 10.0  # how long a scenario's last processes and folders may take to go

Attempt = tuple[int, str, int]  # (run id, task, attempt)
ExpectedOutputs = Callable[[dict[str, Any]], Mapping[str, bytes]]  # run -> {"task/path": bytes}


@dataclass(frozen=True)
class NotApplicable:
    """A check left out of a scenario, with the reason."""

    reason: str


@dataclass
class ProcessEntry:
    pid: int
    ppid: int
    state: str
    session: int
    cwd: str | None


def read_process_table() -> dict[int, ProcessEntry]:
    """Every process's parent, state and cwd, read from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read()
            fields = text[text.rindex(b")") + 2 :].split()
            state, ppid, session = fields[0].decode(), int(fields[1]), int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        try:
            cwd: str | None = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = None
        table[pid] = ProcessEntry(pid, ppid, state, session, cwd)
    return table


def _below(path: str | None, roots: Iterable[str]) -> str | None:
    """The root ``path`` lies below, if any."""
    if path is None:
        return None
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return root
    return None


def attempts_alive(table: Mapping[int, ProcessEntry], roots: Iterable[str]) -> dict[int, Attempt]:
    """The attempt each live process works for: by its cwd below a root, else by the
    nearest ancestor's (a sandboxed model may see its folder under another path)."""
    roots = list(roots)
    own: dict[int, Attempt] = {}
    for pid, entry in table.items():
        root = _below(entry.cwd, roots)
        if root is not None and entry.cwd is not None and entry.state != "Z":
            match = ATTEMPT_PATH.search(entry.cwd[len(root) :])
            if match:
                own[pid] = (int(match[1]), match[2], int(match[3]))
    result: dict[int, Attempt] = {}
    for pid, entry in table.items():
        cursor = pid
        for _ in range(64):  # a process tree is never that deep; a loop in it ends here
            if cursor in own:
                if entry.state != "Z":
                    result[pid] = own[cursor]
                break
            if cursor not in table:
                break
            cursor = table[cursor].ppid
    return result


class ProcessWatch:
    """Samples the process table every ``interval`` s (a daemon thread) while in ``with``,
    recording which attempts have a live process below ``roots`` at each sample."""

    def __init__(self, *roots: Path, interval: float = 0.02) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.interval = interval
        self.samples = 0
        self.seen: set[Attempt] = set()
        self.overlaps: list[tuple[float, tuple[Attempt, ...]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        now = time.time()
        alive = set(attempts_alive(read_process_table(), [str(r) for r in self.roots]).values())
        self.samples += 1
        self.seen |= alive
        by_task: dict[tuple[int, str], list[Attempt]] = defaultdict(list)
        for attempt in alive:
            by_task[attempt[:2]].append(attempt)
        for attempts in by_task.values():
            if len(attempts) > 1 and len(self.overlaps) < 50:
                self.overlaps.append((now, tuple(sorted(attempts))))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> ProcessWatch:
        """Start sampling (a first sample at once); ``with`` or the ``process_watch``
        fixture stops it."""
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="process-watch", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> ProcessWatch:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sampling (idempotent); the checker stops it once the scenario has settled."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# ------------------------------------------------------------------ the checks


def _final_with_reason(run: dict[str, Any], expected: str | set[str] | None) -> list[str]:
    problems = []
    rid = run["id"]
    if run["state"] not in FINAL_RUN_STATES:
        problems.append(f"run {rid} is {run['state']}, not final")
    if expected is not None:
        allowed = {expected} if isinstance(expected, str) else expected
        if run["state"] not in allowed:
            problems.append(f"run {rid} ended {run['state']}, expected {sorted(allowed)}: "
                            f"{run.get('error')}")  # fmt: skip
    if run["state"] != "succeeded":
        error = run.get("error") or {}
        if not error.get("kind") or not error.get("summary"):
            problems.append(f"run {rid} ended {run['state']} without its reason: {error}")
    for task in run["tasks"]:
        if task["state"] not in FINAL_TASK_STATES:
            problems.append(f"run {rid} task {task['name']} stays {task['state']}")
    return problems


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def recorded_attempts(events: list[dict[str, Any]]) -> dict[Attempt, tuple[dt.datetime, Any]]:
    """Each attempt's recorded start (its claim) and end (its first event leaving running)."""
    spans: dict[Attempt, tuple[dt.datetime, Any]] = {}
    for event in events:
        if "task" not in event or "attempt" not in event:
            continue
        key = (int(event["run_id"]), str(event["task"]), int(event["attempt"]))
        if event["kind"] == "task.running" and key not in spans:
            spans[key] = (_at(event["at"]), None)
        elif event["kind"] in ATTEMPT_END_EVENTS and key in spans and spans[key][1] is None:
            spans[key] = (spans[key][0], _at(event["at"]))
    return spans


def records_overlap(spans: Mapping[Attempt, tuple[dt.datetime, Any]]) -> list[str]:
    problems = []
    by_task: dict[tuple[int, str], list[tuple[int, dt.datetime, Any]]] = defaultdict(list)
    for (rid, task, attempt), (start, end) in spans.items():
        if end is None:
            problems.append(f"run {rid} {task} attempt {attempt} started {start} and never ended")
        by_task[(rid, task)].append((attempt, start, end))
    for (rid, task), attempts in by_task.items():
        attempts.sort()
        for (a, _, end), (b, start, _) in itertools.pairwise(attempts):
            if end is not None and start < end:
                problems.append(f"run {rid} {task}: attempt {b} started at {start}, before "
                                f"attempt {a} ended at {end}")  # fmt: skip
    return problems


def leftover_processes(
    roots: Iterable[Path], uids: Sequence[range], sessions: Collection[int] = ()
) -> list[str]:
    """Live processes with their cwd below ``roots``, running as a uid of ``uids``, or in
    one of ``sessions`` (those of servers that were stopped or killed)."""
    names = [str(Path(r).resolve()) for r in roots]
    found = []
    for pid, entry in read_process_table().items():
        if entry.state == "Z":
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if _below(entry.cwd, names) or any(uid in r for r in uids) or entry.session in sessions:
            found.append(f"pid {pid} uid {uid} session {entry.session} cwd {entry.cwd}: "
                         f"{cmdline.strip()[:200]}")  # fmt: skip
    return found


def leftover_attempt_folders(roots: Iterable[Path]) -> list[str]:
    """Attempt folders still below ``roots`` (a lock file beside none is no working folder)."""
    found = []
    for root in roots:
        for folder, dirs, _ in os.walk(root):
            if re.fullmatch(r"run\d+", os.path.basename(folder)):
                found += [os.path.join(folder, d) for d in dirs if ATTEMPT_NAME.match(d)]
                dirs[:] = [d for d in dirs if not ATTEMPT_NAME.match(d)]
    return found


def _partial_objects(store_root: Path) -> list[str]:
    """Temporary objects of the file store (``.part-*``, simyard.storage.file) left behind."""
    if not store_root.exists():
        return []
    return [str(p) for p in store_root.rglob(".part-*")]


def _whole_outputs(
    api: Any, run: dict[str, Any], expected: ExpectedOutputs | NotApplicable
) -> list[str]:
    problems = []
    rid = run["id"]
    got: dict[str, bytes] = {}
    for out in run["outputs"]:
        name = f"{out['task']}/{out['path']}"
        answer = api.get(f"/runs/{rid}/outputs/{name}")
        body = answer.content
        got[name] = body
        if answer.status_code != 200:
            problems.append(f"run {rid} output {name} answered {answer.status_code}")
        elif len(body) != out["size"] or hashlib.sha256(body).hexdigest() != out["sha256"]:
            problems.append(f"run {rid} output {name} is not whole: {len(body)} bytes of "
                            f"{out['size']}, or another sha256")  # fmt: skip
    if not isinstance(expected, NotApplicable):
        for name, content in expected(run).items():
            if name not in got:
                problems.append(f"run {rid} has no output {name}: {sorted(got)}")
            elif got[name] != content:
                problems.append(f"run {rid} output {name} is not what the model wrote: "
                                f"{got[name][:80]!r} != {content[:80]!r}")  # fmt: skip
    return problems


def _emails(
    smtp: Smtp, runs: Mapping[int, dict[str, Any]], kills: bool, wait: float = 60
) -> list[str]:
    def per_run() -> dict[int, list[Any]]:
        found: dict[int, list[Any]] = defaultdict(list)
        for _, message in list(smtp.box.messages):
            match = SUBJECT.match(str(message["Subject"]))
            if match and int(match[1]) in runs:
                found[int(match[1])].append(message)
        return found

    deadline = time.monotonic() + wait
    while len(per_run()) < len(runs) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # every outbox passes a few times more: a second copy would be here
    found = per_run()
    problems = []
    for rid, run in runs.items():
        messages = found.get(rid, [])
        word = OUTCOME_WORDS[run["state"]] if run["state"] in OUTCOME_WORDS else run["state"]
        subjects = Counter(str(m["Subject"]) for m in messages)
        ids = {str(m["Message-ID"]) for m in messages}
        if not messages:
            problems.append(f"run {rid} ({run['state']}) got no email")
        elif any(not s.endswith(" " + word) for s in subjects):
            problems.append(f"run {rid} ended {run['state']} but was told: {sorted(subjects)}")
        elif len(messages) > 1 and not (kills and len(ids) == 1):
            problems.append(f"run {rid} got {len(messages)} emails: {sorted(subjects)} {ids}")
    return problems


def _settle(look: Callable[[], list[str]], seconds: float) -> list[str]:
    """What ``look`` still finds once it has found nothing, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    found = look()
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = look()
    return found


def toy_outputs(run: dict[str, Any]) -> dict[str, bytes]:
    """What the toy model (tests.toymodel) writes for ``run``, with the forcing's two rows."""
    days, site = int(run["params"]["days"]), run["params"]["site"]
    return {
        "prep/prep/days.txt": f"{days}\n2".encode(),
        "simulate/results/summary.json": json.dumps({"total": days * 10, "site": site}).encode(),
        "report/report.txt": f"total {days * 10} at {site}\n".encode(),
    }


def assert_clean_outcome(
    server: Server,
    run_ids: Iterable[int],
    watch: ProcessWatch,
    *,
    outputs: ExpectedOutputs | NotApplicable,
    smtp: Smtp | NotApplicable,
    kills: bool,
    store_root: Path | NotApplicable | None = None,
    states: Mapping[int, str | set[str]] | None = None,
    also: Sequence[Server] = (),
    user: str = "admin",
) -> dict[int, dict[str, Any]]:
    """Assert (a)-(f) of the module docstring for ``run_ids``; the runs as the API answers.

    ``outputs`` gives the bytes the model writes for a run ("task/path" -> bytes);
    ``kills`` says a process was killed, so an email may have gone out twice;
    ``store_root`` defaults to the server's file store folder (NotApplicable on S3);
    ``states`` the final state (or states) each run may end in; ``also`` the other
    servers on the same database: no process may be left running as one of any server's
    model uids, nor in the session of any server that was stopped or killed.
    """
    ids = sorted(set(run_ids))
    problems: list[str] = []
    runs: dict[int, dict[str, Any]] = {}
    with server.http(user) as api:
        for rid in ids:  # (a)
            runs[rid] = server.wait_for_run(rid, timeout=240, user=user)
            problems += _final_with_reason(runs[rid], (states or {}).get(rid))
        # (c), (d): the last processes and folders go a moment after the final state.
        uids = [s.model_uids for s in (server, *also)]
        sessions = {pid for s in (server, *also) for pid in s.stopped_pids}
        orphans = _settle(lambda: leftover_processes(watch.roots, uids, sessions), SETTLE_SECONDS)
        folders = _settle(lambda: leftover_attempt_folders(watch.roots), SETTLE_SECONDS)
        watch.stop()
        problems += [f"orphan process: {p}" for p in orphans]
        problems += [f"leftover attempt folder: {f}" for f in folders]
        spans: dict[Attempt, tuple[dt.datetime, Any]] = {}
        for rid in ids:  # (b) by the records
            spans |= recorded_attempts(api.get(f"/runs/{rid}/events").json())
        problems += records_overlap(spans)
        problems += [f"attempts alive at once at {when:.3f}: {attempts}"  # (b) by processes
                     for when, attempts in watch.overlaps]  # fmt: skip
        unrecorded = {a for a in watch.seen if a[0] in runs and a not in spans}
        problems += [f"attempt {a} ran with no recorded claim" for a in sorted(unrecorded)]
        for run in runs.values():  # (e)
            if run["state"] == "succeeded":
                problems += _whole_outputs(api, run, outputs)
        root = server.store_root if store_root is None else store_root
        if isinstance(root, Path):
            problems += [f"partial object in the store: {p}" for p in _partial_objects(root)]
    if not isinstance(smtp, NotApplicable):  # (f)
        problems += _emails(smtp, runs, kills)
    assert watch.samples > 1, "the process watch never sampled"
    assert not problems, "\n".join(problems)
    return runs


__all__ = [
    "NotApplicable", "ProcessWatch", "assert_clean_outcome", "attempts_alive",
    "leftover_attempt_folders", "leftover_processes", "read_process_table", "recorded_attempts",
    "records_overlap",
    "toy_outputs",
]  # fmt: skip
