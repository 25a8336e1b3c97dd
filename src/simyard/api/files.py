"""Logs (byte ranges, live follow over server-sent events) and outputs (one file, or a zip)."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import re
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from simyard.api.deps import ByteOffset, Cursor, DbDep, PlatformDep, RowId, UserDep, reading
from simyard.api.runs import load_run
from simyard.dispatch.changes import Change
from simyard.domain.provenance import METADATA_FILE, run_crate
from simyard.domain.states import TaskRunState
from simyard.domain.tables import Event, Run, StoredFile, TaskRun, User, aware
from simyard.storage.base import StorageError
from simyard.times import utc_text
from simyard.wiring import Platform

router = APIRouter(prefix="/runs/{run_id}", tags=["logs and outputs"])
log = logging.getLogger("simyard.api")

CHUNK = 1 << 16
FOLLOW_POLL_SECONDS = 0.05
FOLLOW_TAIL = 1 << 16  # bytes of the stored log's end sent when the live copy missed it
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")  # what of a task and folder goes into a file name
_CUT_MARKER = re.compile(rb"\n\[simyard: (\d+) bytes of output cut here; the end follows\]\n")


def answers(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI declaration of a success that is no JSON (errors stay JSON)."""
    return {200: {"description": what, "content": {media_type: {}}}}


def _task(run: Run, task: str) -> TaskRun:
    for task_run in run.task_runs:
        if task_run.name == task:
            return task_run
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run {run.id} has no task {task!r}")


_STORED_LOG = select(StoredFile).where(
    StoredFile.task_run_id == bindparam("task_run"), StoredFile.kind == "log"
)


def _log_source(platform: Platform, db: Any, task_run: TaskRun) -> tuple[str, Any]:
    """("live", path) while the task runs; ("stored", key) once its log is stored."""
    stored = db.scalar(_STORED_LOG, {"task_run": task_run.id})
    if stored is not None and TaskRunState(task_run.state).final:
        return "stored", stored.key
    return "live", platform.dispatcher.live_logs.path(task_run.id, max(task_run.attempt, 1))


@router.get("/logs/{task}", responses=answers("text/plain", "The bytes of the log asked for"))
async def read_log(
    run_id: RowId,
    task: str,
    user: UserDep,
    platform: PlatformDep,
    offset: ByteOffset = 0,
    length: ByteOffset = 1 << 20,
) -> Response:
    """Up to ``length`` bytes of the task's log from ``offset`` (the live log while it runs)."""
    length = min(length, 16 << 20)

    def read(db: Session) -> bytes:
        run = load_run(db, user, run_id)
        kind, source = _log_source(platform, db, _task(run, task))
        # Past the end there is nothing to read, and no seek: a file system refuses offsets
        # beyond its largest file (EINVAL), while a cursor may be as large as any id.
        if kind == "stored":
            if offset < platform.store.stat(source).size:
                with platform.store.open(source) as handle:
                    handle.seek(offset)
                    return handle.read(length)
        elif source.exists() and offset < source.stat().st_size:
            with open(source, "rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        return b""

    data = await reading(platform, read)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Log-Next-Offset": str(offset + len(data))},
    )


def _time_text(at: float) -> str:
    return utc_text(dt.datetime.fromtimestamp(at, dt.UTC))


class _CaptureTimes:
    """The capture time of each line of one attempt's live log, read as it grows."""

    def __init__(self, platform: Platform, task_run_id: int, attempt: int) -> None:
        self.where = (task_run_id, attempt)
        self.live_logs = platform.dispatcher.live_logs
        self.firsts: list[int] = []
        self.times: list[float] = []
        self.offset = 0

    def of(self, line: int) -> str | None:
        """The time line ``line`` (1 the first) was captured; None if not recorded."""
        if not self.firsts or self.firsts[-1] < line:
            found, self.offset = self.live_logs.times(*self.where, offset=self.offset)
            for first, at in found:
                self.firsts.append(first)
                self.times.append(at)
        index = bisect.bisect_right(self.firsts, line) - 1
        return _time_text(self.times[index]) if index >= 0 else None


@router.get("/logs/{task}/times")
def log_times(
    run_id: RowId, task: str, db: DbDep, user: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    """When the server captured the lines of the task's log (its last attempt):
    ``lines`` is ``[[FIRST_LINE, TIME], ...]``, line FIRST_LINE and those after it up to
    the next entry's came at TIME. Lines the server did not see live have none."""
    task_run = _task(load_run(db, user, run_id), task)
    attempt = max(task_run.attempt, 1)
    found, _ = platform.dispatcher.live_logs.times(task_run.id, attempt)
    return {
        "task": task,
        "attempt": attempt,
        "lines": [[first, _time_text(at)] for first, at in found],
    }


@router.get("/logs/{task}/follow", responses=answers("text/event-stream", "The log's lines"))
async def follow_log(
    run_id: RowId, task: str, user: UserDep, platform: PlatformDep, times: bool = False
) -> StreamingResponse:
    """The task's live log as server-sent events (``data:`` one line each, a JSON string;
    with ``times=true`` an object ``{"line", "at"}``, ``at`` the time the server captured
    the line), ending with an ``event: end`` once the task has finished and every line
    was sent.

    The live copy is capped and a flood is thinned on its way; when the task has ended
    and the live copy did not reach the log's real end, the stream finishes with a line
    saying how much it skipped and the stored log's last lines."""

    def check() -> None:
        with platform.readers() as db:
            _task(load_run(db, user, run_id), task)  # 404 now, not in the middle of a stream

    def where_is_it() -> tuple[int, bool, int] | None:
        """Where the log is now; None once the reader may no longer read it (disabled)."""
        with platform.readers() as db:
            reader = db.get(User, user.id)
            run = db.get(Run, run_id)
            task_run = _task(run, task) if run is not None else None
            if task_run is None or reader is None or reader.disabled:
                return None
            return task_run.id, TaskRunState(task_run.state).final, max(task_run.attempt, 1)

    # Database calls run in the thread pool: on the event loop, a wait for SQLite's write
    # lock would stall every request, including the one holding the lock.
    await run_in_threadpool(check)

    def event(line: bytes, at: str | None = None) -> str:
        text = line.decode("utf-8", "replace")
        return "data: " + json.dumps({"line": text, "at": at} if times else text) + "\n\n"

    async def lines() -> AsyncIterator[str]:
        offset = 0
        partial = b""
        attempt = None
        last_line = b""
        sent = 0  # lines of this attempt's live log sent
        stamps: _CaptureTimes | None = None
        changes = platform.dispatcher.changes
        while True:
            seen = changes.seen()  # what is recorded after this wakes the wait below
            found = await run_in_threadpool(where_is_it)
            if found is None:
                return
            task_run_id, final, current = found
            if attempt is not None and current != attempt:
                yield f"event: attempt\ndata: {current}\n\n"
                offset, partial, sent = 0, b"", 0
            if stamps is None or stamps.where != (task_run_id, current):
                stamps = _CaptureTimes(platform, task_run_id, current)
            attempt = current
            path = platform.dispatcher.live_logs.path(task_run_id, current)
            data = b""
            if path.exists():
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(CHUNK * 16)
                offset += len(data)
            chunk = partial + data
            *complete, partial = chunk.split(b"\n")
            for line in complete:
                sent += 1
                yield event(line, stamps.of(sent) if times else None)
            if complete:
                last_line = complete[-1]
            if not data:
                if final:
                    if partial:
                        sent += 1
                        yield event(partial, stamps.of(sent) if times else None)
                        last_line = partial
                    ending = await run_in_threadpool(
                        _missed_ending, platform, task_run_id, last_line, offset
                    )
                    for line in ending:
                        yield event(line)
                    state = await run_in_threadpool(_task_state, platform, run_id, task)
                    yield f"event: end\ndata: {json.dumps(state)}\n\n"
                    return
                await changes.wait(seen, FOLLOW_POLL_SECONDS, Change.logged, Change.recorded)

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


@router.get("/outputs")
def list_outputs(run_id: RowId, db: DbDep, user: UserDep) -> list[dict[str, Any]]:
    run = load_run(db, user, run_id)
    names = {t.id: t.name for t in run.task_runs}
    files = db.scalars(
        select(StoredFile)
        .where(StoredFile.run_id == run.id, StoredFile.kind.in_(["output", "diagnostic"]))
        .order_by(StoredFile.task_run_id, StoredFile.path)
    )
    return [
        {
            "task": names.get(f.task_run_id or 0, ""),
            "kind": f.kind,
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
        }
        for f in files
    ]


def _missed_ending(
    platform: Platform, task_run_id: int, last_sent: bytes, sent: int
) -> list[bytes]:
    """The lines a follower still needs once the task has ended: none when the live copy
    ended where the stored log ends, else a line saying how many bytes were not shown
    live, then the stored log's last lines (up to FOLLOW_TAIL bytes of them)."""
    with platform.readers() as db:
        stored = db.scalar(
            select(StoredFile).where(
                StoredFile.task_run_id == task_run_id, StoredFile.kind == "log"
            )
        )
        key = stored.key if stored is not None else None
    if key is None:
        return []
    size = platform.store.stat(key).size
    with platform.store.open(key) as handle:
        start = max(0, size - FOLLOW_TAIL)
        handle.seek(start)
        tail = handle.read(FOLLOW_TAIL)
        cut = _cut_bytes(handle, size, platform.settings.max_log_size)
    lines = tail.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if start > 0 and lines:
        lines.pop(0)  # a piece of a line
    if not lines or lines[-1].rstrip(b"\r") == last_sent.rstrip(b"\r"):
        return []
    shown = sum(len(line) + 1 for line in lines)
    total = size + cut if cut is not None else None
    if total is None:
        return [b"[simyard: part of the log was not shown live; its last lines follow]", *lines]
    skipped = max(0, total - sent - shown)
    return [
        b"[simyard: %d bytes of the log not shown live; its last lines follow]" % skipped,
        *lines,
    ]


def _cut_bytes(handle: Any, size: int, cap: int) -> int | None:
    """How many bytes the engine cut from the middle of a stored log of at most ``cap``
    bytes (its marker sits at the half of a cut log); 0 when it was not cut, None when
    it was but the marker is not where it should be."""
    if size < cap - 8192:  # a cut log fills its cap, less the part of a line it drops
        return 0
    handle.seek(max(0, cap // 2 - 8192))
    match = _CUT_MARKER.search(handle.read(16384))
    return int(match.group(1)) - len(match.group(0)) if match is not None else None


def _task_state(platform: Platform, run_id: int, task: str) -> str:
    with platform.readers() as db:
        run = db.get(Run, run_id)
        return _task(run, task).state if run is not None else "unknown"


def _outputs(db: Any, run: Run) -> list[tuple[str, StoredFile]]:
    names = {t.id: t.name for t in run.task_runs}
    files = db.scalars(
        select(StoredFile).where(
            StoredFile.run_id == run.id, StoredFile.kind.in_(["output", "diagnostic"])
        )
    )
    return [(names.get(f.task_run_id or 0, ""), f) for f in files]


@router.get("/outputs.zip", responses=answers("application/zip", "Every output, as a zip"))
def download_all(
    run_id: RowId,
    db: DbDep,
    user: UserDep,
    platform: PlatformDep,
    task: str | None = None,
    folder: str = "",
) -> StreamingResponse:
    """Every output as one zip, streamed (the server never holds it whole); with ``task``
    (and ``folder``) only that task's outputs (under that folder).

    The first file is opened before the answer starts, so storage that is away answers
    503 rather than a 200 that breaks off; a read that fails later aborts the connection
    (the client sees an error, never a zip that merely ends early)."""
    run = load_run(db, user, run_id)
    outputs = _outputs(db, run)
    crate: str | None = None
    filename = f"run-{run.id}-outputs.zip"
    if task is None and folder:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="folder: needs a task")
    if task is not None:
        _task(run, task)
        under = folder.strip("/") + "/" if folder.strip("/") else ""
        outputs = [(t, f) for t, f in outputs if t == task and f.path.startswith(under)]
        if not outputs:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"folder: task {task!r} of run {run.id} has no outputs in {folder!r}",
            )
        named = _SAFE_NAME.sub("_", f"{task}-{under.rstrip('/')}".strip("-"))
        filename = f"run-{run.id}-{named}.zip"
    else:
        # The whole zip is an RO-Crate: its metadata file describes every output and the run.
        crate = json.dumps(run_crate(db=db, run=run, base_url=platform.settings.base_url), indent=1)
    entries = [(f"{name}/{f.path}", f.key) for name, f in outputs]
    db.commit()  # release the database before the long part: streaming
    first = _opened(platform, entries[0][1]) if entries else None

    class Pipe:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.chunks.append(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

        def take(self) -> bytes:
            data = b"".join(self.chunks)
            self.chunks.clear()
            return data

    def stream() -> Iterator[bytes]:
        pipe = Pipe()
        archive = zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]
        with archive:
            for index, (name, key) in enumerate(entries):
                source = first if index == 0 and first is not None else None
                with (
                    archive.open(name, "w", force_zip64=True) as dest,
                    source or platform.store.open(key) as src,
                ):
                    while chunk := src.read(CHUNK):
                        dest.write(chunk)
                        if data := pipe.take():
                            yield data
                if data := pipe.take():
                    yield data
            if crate is not None:
                archive.writestr(METADATA_FILE, crate)
        yield pipe.take()

    return StreamingResponse(
        _aborting(stream(), first),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/outputs/{task}/{path:path}", responses=answers("application/octet-stream", "The file")
)
def download_output(
    run_id: RowId, task: str, path: str, db: DbDep, user: UserDep, platform: PlatformDep
) -> StreamingResponse:
    """One output file, streamed."""
    run = load_run(db, user, run_id)
    for name, f in _outputs(db, run):
        if name == task and f.path == path:
            key, size = f.key, f.size
            break
    else:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no output {task}/{path} in run {run_id}"
        )
    db.commit()  # release the database before the long part: streaming
    return stream_stored(platform, key, size, path, where=f"{task}/{path}")


def stream_stored(
    platform: Platform, key: str, size: int, name: str, *, where: str = ""
) -> StreamingResponse:
    """A stored file as a download named after ``name``'s last part, streamed.

    Opened and its first chunk read before the answer starts (storage away: 503, not a
    200 that breaks off); a file that reads short aborts the connection."""
    handle = _opened(platform, key)
    try:
        head = handle.read(CHUNK)
    except BaseException:
        handle.close()
        raise

    def stream() -> Iterator[bytes]:
        with handle:
            sent = len(head)
            yield head
            while chunk := handle.read(CHUNK):
                sent += len(chunk)
                yield chunk
        if sent != size:
            raise StorageError(f"{where or name}: {sent} bytes read of {size}")

    filename = name.rsplit("/", 1)[-1].replace('"', "")
    return StreamingResponse(
        _aborting(stream(), handle),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _opened(platform: Platform, key: str) -> BinaryIO:
    """The stored object, open: a StorageError here is a 503 (see api/outages.py)."""
    return platform.store.open(key)


def _aborting(chunks: Iterator[bytes], opened: BinaryIO | None) -> Iterator[bytes]:
    """``chunks``, logging a failure once the answer has started; the exception goes on
    to the server, which then drops the connection without ending the body."""
    try:
        yield from chunks
    except Exception as exc:
        log.warning("download cut off, connection aborted: %s", exc)
        raise
    finally:
        if opened is not None:
            opened.close()


__all__ = ["User", "router"]


def _events_after(db: Any, run_id: int, after: int) -> list[dict[str, Any]]:
    rows = db.scalars(
        select(Event).where(Event.run_id == run_id, Event.id > after).order_by(Event.id)
    )
    return [
        {"id": e.id, "kind": e.kind, "at": aware(e.created_at).isoformat(), **e.payload}
        for e in rows
    ]


@router.get("/events")
def list_events(run_id: RowId, db: DbDep, user: UserDep, after: Cursor = 0) -> list[dict[str, Any]]:
    """The run's events (state changes, retries with their reasons), oldest first."""
    load_run(db, user, run_id)
    return _events_after(db, run_id, after)


@router.get("/events/follow", responses=answers("text/event-stream", "The run's events"))
async def follow_events(run_id: RowId, user: UserDep, platform: PlatformDep) -> StreamingResponse:
    """The run's events as server-sent events, ending after the run's final state."""

    def check() -> None:
        with platform.readers() as db:
            load_run(db, user, run_id)

    def events_after(after: int) -> list[dict[str, Any]] | None:
        """The run's next events; None once the reader may no longer read them (disabled)."""
        with platform.readers() as db:
            reader = db.get(User, user.id)
            if reader is None or reader.disabled:
                return None
            return _events_after(db, run_id, after)

    await run_in_threadpool(check)

    async def stream() -> AsyncIterator[str]:
        after = 0
        changes = platform.dispatcher.changes
        while True:
            seen = changes.seen()  # what is recorded after this wakes the wait below
            events = await run_in_threadpool(events_after, after)
            if events is None:
                return
            for event in events:
                after = event["id"]
                yield f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n"
            if any(e["kind"] in FINAL_RUN_EVENTS for e in events):
                return
            await changes.wait(seen, FOLLOW_POLL_SECONDS * 2, Change.recorded)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


FINAL_RUN_EVENTS = {f"run.{s}" for s in ("succeeded", "failed", "cancelled", "timed_out")}
