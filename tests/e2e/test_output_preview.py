"""An output looked at in the browser without downloading it, shown as data, never as a page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import MakeModel
from tests.e2e.conftest import PASSWORD, NewPage
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

MANIFEST = """\
simyard: 1
name: shapes
version: "1"
tasks:
  make:
    command: [python3, make.py]
    outputs: [out/]
"""

MAKE = r"""
import json, os, struct, zlib
os.makedirs("out")
with open("out/table.csv", "w") as f:
    f.write("step,value\n")
    for i in range(1500):
        f.write(f"{i},{i * 0.5}\n")
json.dump({"ok": True, "values": [1, 2, 3]}, open("out/data.json", "w"))
notes = "# Findings\n\n**bold** <script>document.title = 'md ran'</script>\n"
open("out/notes.md", "w").write(notes)
open("out/plot.svg", "w").write(
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    '<script>parent.document.title = "svg ran"; document.title = "svg ran"</script>'
    '<rect width="40" height="40" fill="red"/></svg>'
)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open("out/pic.png", "wb").write(png)
open("out/run.log", "w").write("<b>not bold</b>\nline two\n")
open("out/blob.bin", "wb").write(b"\x00\x01\x02" * 100)
"""


def run_shapes(server: Server, make_model: MakeModel) -> int:
    added = server.cli("models", "add", make_model(MANIFEST, {"make.py": MAKE}))
    assert added.returncode == 0, added.stderr
    with server.http() as api:
        answer = api.post("/runs", json={"model": "shapes"})
    assert answer.status_code == 201, answer.text
    run_id = int(answer.json()["id"])
    assert server.wait_for_run(run_id)["state"] == "succeeded"
    return run_id


def preview(page: Page, server: Server, run_id: int, path: str) -> None:
    page.goto(f"{server.url}/runs/{run_id}/preview/make/{path}")
    expect(page.get_by_role("heading", name=path)).to_be_visible()


def test_outputs_are_previewed_as_data(
    server: Server, make_model: MakeModel, new_page: NewPage, csp_violations: list[str]
) -> None:
    run_id = run_shapes(server, make_model)
    page = new_page("admin")

    # From the run page: each output has a preview link.
    page.goto(f"{server.url}/runs/{run_id}")
    row = page.locator("#outputs tr", has_text="out/table.csv")
    row.get_by_role("link", name="preview").click()
    expect(page.get_by_role("heading", name="out/table.csv")).to_be_visible()
    table = page.locator("#preview table")
    expect(table.locator("th")).to_have_text(["step", "value"])
    expect(table.locator("tbody tr")).to_have_count(1000)
    expect(page.locator("#preview-cut")).to_contain_text("The first 1000 rows are shown")

    preview(page, server, run_id, "out/data.json")
    expect(page.locator("#preview pre")).to_contain_text('"values": [')

    preview(page, server, run_id, "out/notes.md")
    expect(page.locator("#preview h1")).to_have_text("Findings")
    expect(page.locator("#preview strong")).to_have_text("bold")
    assert page.locator("#preview script").count() == 0  # raw HTML is not rendered

    preview(page, server, run_id, "out/run.log")
    expect(page.locator("#preview pre")).to_contain_text("<b>not bold</b>")
    assert page.locator("#preview b").count() == 0

    preview(page, server, run_id, "out/blob.bin")
    expect(page.locator("#preview")).to_contain_text("A binary file: no preview")

    preview(page, server, run_id, "out/pic.png")
    image = page.locator("#preview img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 4

    # An SVG is an image: its script never runs, shown in the page or opened on its own.
    preview(page, server, run_id, "out/plot.svg")
    expect(page.locator("#preview img")).to_be_visible()
    assert "ran" not in page.title()
    page.goto(f"{server.url}/runs/{run_id}/image/make/out/plot.svg")
    assert page.evaluate("document.title") != "svg ran"
    csp_violations.clear()  # the opened SVG's script was refused, as it should be


def test_image_bytes_are_sandboxed_and_only_for_images_of_visible_runs(
    server: Server, make_model: MakeModel
) -> None:
    run_id = run_shapes(server, make_model)
    server.add_user("carol")
    with _logged_in(server, "admin") as owner, _logged_in(server, "carol") as other:
        image = owner.get(f"/runs/{run_id}/image/make/out/plot.svg")
        assert image.status_code == 200
        assert image.headers["content-type"].startswith("image/svg+xml")
        assert "sandbox" in image.headers["content-security-policy"]
        assert image.headers["x-content-type-options"] == "nosniff"
        # Only images: a text output is never answered inline from this address.
        assert owner.get(f"/runs/{run_id}/image/make/out/run.log").status_code == 404
        assert owner.get(f"/runs/{run_id}/preview/make/out/absent.txt").status_code == 404
        assert other.get(f"/runs/{run_id}/preview/make/out/run.log").status_code == 404
        assert other.get(f"/runs/{run_id}/image/make/out/pic.png").status_code == 404


@contextmanager
def _logged_in(server: Server, user: str) -> Iterator[httpx.Client]:
    """A cookie-keeping client logged in through the login form."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        form = {"username": user, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"}
        answer = client.post("/login", data=form)
        assert answer.status_code == 303, answer.text
        yield client
