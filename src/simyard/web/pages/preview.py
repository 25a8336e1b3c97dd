"""A look at one output without downloading it: text, CSV as a table, JSON, Markdown, images.

What a model wrote is shown as data, never as a page: text is escaped, Markdown is rendered
with raw HTML off, and an image (SVG included) is only ever an ``<img>``, whose scripts a
browser does not run. The image bytes themselves are answered with a Content-Security-Policy
``sandbox`` so that opening them directly cannot run script in simyard's origin either.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.api.deps import PlatformDep, RowId
from simyard.domain.tables import Run, StoredFile
from simyard.storage.base import StorageError
from simyard.web.pages.common import PageDb, PageUser
from simyard.web.pages.run import _visible_run
from simyard.web.templating import render

router = APIRouter()

TEXT_LIMIT = 256 * 1024  # bytes of a text file shown; the download has the rest
CSV_ROWS = 1000
JSON_LIMIT = 2 * 2**20  # a larger JSON file is shown as its first bytes of text
IMAGE_LIMIT = 20 * 2**20
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
# For the bytes of an image opened on their own: no script, no origin, nothing loaded.
IMAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@dataclass
class Preview:
    """What the page shows: ``kind`` is text, table, json, markdown, image or binary."""

    kind: str
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    cut: bool = False  # only the beginning is shown


def _output(db: Session, run: Run, task: str, path: str) -> StoredFile:
    ids = [t.id for t in run.task_runs if t.name == task]
    found = db.scalar(
        select(StoredFile).where(
            StoredFile.run_id == run.id,
            StoredFile.kind.in_(["output", "diagnostic"]),
            StoredFile.task_run_id.in_(ids),
            StoredFile.path == path,
        )
    )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no output {task}/{path}")
    return found


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return name[name.rfind(".") :] if "." in name else ""


def _head(platform: Any, key: str, limit: int) -> bytes:
    with platform.store.open(key) as handle:
        return bytes(handle.read(limit))


def preview_of(data: bytes, suffix: str, size: int) -> Preview:
    """The preview of an output whose first bytes are ``data`` (``size`` in all)."""
    if suffix in IMAGE_TYPES:
        return Preview("image", cut=size > IMAGE_LIMIT)
    if b"\x00" in data[:8192]:
        return Preview("binary")
    cut = size > len(data)
    text = data.decode("utf-8", errors="replace")
    if cut and "\n" in text:
        text = text[: text.rfind("\n") + 1]  # never a half line
    if suffix in (".csv", ".tsv"):
        reader = csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = next(reader, [])
            rows = [row for _, row in zip(range(CSV_ROWS + 1), reader, strict=False)]
        except csv.Error:
            return Preview("text", text=text, cut=cut)
        return Preview(
            "table", header=header, rows=rows[:CSV_ROWS], cut=cut or len(rows) > CSV_ROWS
        )
    if suffix == ".json" and not cut:
        try:
            return Preview("json", text=json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except ValueError:
            return Preview("text", text=text)
    if suffix in (".md", ".markdown"):
        return Preview("markdown", text=text, cut=cut)
    return Preview("text", text=text, cut=cut)


HEAD_BYTES = 8192  # of an input read for its first rows on the run page
HEAD_ROWS = 5


def first_rows(platform: Any, stored: StoredFile) -> Preview | None:
    """The first rows of a text or CSV input, as the run page shows them under its inputs;
    None for an image, a binary file, or while the storage cannot be read."""
    suffix = _suffix(stored.filename or stored.path)
    if suffix in IMAGE_TYPES:
        return None
    try:
        data = _head(platform, stored.key, HEAD_BYTES)
    except (OSError, StorageError):
        return None
    shown = preview_of(data, suffix if suffix in (".csv", ".tsv") else ".txt", stored.size)
    if shown.kind == "table":
        more = shown.cut or len(shown.rows) > HEAD_ROWS
        return Preview("table", header=shown.header, rows=shown.rows[:HEAD_ROWS], cut=more)
    if shown.kind != "text":
        return None
    lines = shown.text.splitlines()
    return Preview(
        "text", text="\n".join(lines[:HEAD_ROWS]), cut=shown.cut or len(lines) > HEAD_ROWS
    )


@router.get("/runs/{run_id}/preview/{task}/{path:path}", response_class=HTMLResponse)
def preview_page(
    request: Request,
    run_id: RowId,
    task: str,
    path: str,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
) -> HTMLResponse:
    run = _visible_run(db, user, run_id)
    stored = _output(db, run, task, path)
    suffix = _suffix(path)
    limit = JSON_LIMIT if suffix == ".json" else TEXT_LIMIT
    data = b"" if suffix in IMAGE_TYPES else _head(platform, stored.key, limit)
    return render(
        request, "preview.html", user, nav="runs", run=run, task=task, path=path,
        size=stored.size, preview=preview_of(data, suffix, stored.size),
        shown_bytes=len(data), csv_rows=CSV_ROWS,
    )  # fmt: skip


@router.get("/runs/{run_id}/image/{task}/{path:path}")
def image_bytes(
    run_id: RowId, task: str, path: str, db: PageDb, user: PageUser, platform: PlatformDep
) -> Response:
    """An image output's bytes for the preview's ``<img>`` (never any other kind of file)."""
    run = _visible_run(db, user, run_id)
    media_type = IMAGE_TYPES.get(_suffix(path))
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not an image output")
    stored = _output(db, run, task, path)
    if stored.size > IMAGE_LIMIT:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="too large to preview")
    return Response(
        _head(platform, stored.key, IMAGE_LIMIT),
        media_type=media_type,
        headers={"Content-Security-Policy": IMAGE_POLICY},
    )
