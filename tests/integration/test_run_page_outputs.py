"""A run with thousands of outputs: its page lists folders (file counts, sizes), not every
file, and every file is still one click away on the folder's own page (issue 14 item 14)."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Server, _server, logged_in

pytestmark = pytest.mark.slow

MANIFEST = """\
simyard: 1
name: many
version: "1"
tasks:
  write:
    command: [python3, write.py]
    outputs: [out/]
"""

WRITE = """
import os
for folder in range(40):
    os.makedirs(f"out/t{folder:02d}")
    for n in range(50):
        open(f"out/t{folder:02d}/field{n:03d}.dat", "w").write("x" * (10 + n))
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    """A server with one finished run of 2000 outputs in 40 folders of 50 files."""
    tmp_path = tmp_path_factory.mktemp("many")
    for srv in _server(tmp_path, {}):
        model = tmp_path / "model"
        model.mkdir()
        (model / "simyard.yaml").write_text(MANIFEST)
        (model / "write.py").write_text(WRITE)
        added = srv.cli("models", "add", str(model))
        assert added.returncode == 0, added.stderr
        with srv.http() as api:
            answer = api.post("/runs", json={"model": "many"})
        assert answer.status_code == 201, answer.text
        run_id = int(answer.json()["id"])
        assert srv.wait_for_run(run_id, timeout=300)["state"] == "succeeded"
        yield srv, run_id


def test_a_run_page_with_2000_outputs_lists_folders_and_is_small(
    many: tuple[Server, int],
) -> None:
    server, run_id = many
    with logged_in(server) as web:
        web.get(f"/runs/{run_id}")  # warm: the model's manifest is read once
        took = []
        for _ in range(7):
            started = time.perf_counter()
            page = web.get(f"/runs/{run_id}")
            took.append(time.perf_counter() - started)
    assert page.status_code == 200
    took.sort()
    print(f"run page with 2000 outputs: {len(page.content)} bytes in {took[3]:.3f} s"
          f" (median of 7; fastest {took[0]:.3f} s)")  # fmt: skip
    assert len(page.content) < 150_000
    # a folder, its file count and total size (50 files of 10..59 bytes = 1725 B)
    assert "out/t07/" in page.text
    assert "50 files" in page.text
    assert "1.7 KiB" in page.text
    assert "field013.dat" not in page.text  # the files are behind their folder


def test_every_output_is_reachable_from_its_folder_page(many: tuple[Server, int]) -> None:
    server, run_id = many
    with logged_in(server) as web:
        page = web.get(f"/runs/{run_id}").text
        folders = re.findall(r'href="(/runs/\d+/folder\?[^"]+)"', page)
        assert len(folders) == 40
        listed: set[str] = set()
        for url in folders:
            shown = web.get(url.replace("&amp;", "&"))
            assert shown.status_code == 200
            listed |= set(re.findall(r"download>(out/t\d\d/field\d+\.dat)</a>", shown.text))
        assert len(listed) == 2000
        one = web.get(f"/api/v1/runs/{run_id}/outputs/write/out/t39/field049.dat")
        assert one.content == b"x" * 59


def test_another_user_cannot_list_a_folder_of_the_run(many: tuple[Server, int]) -> None:
    server, run_id = many
    server.add_user("mallory")
    with logged_in(server, "mallory") as web:
        answer = web.get(f"/runs/{run_id}/folder", params={"task": "write", "path": "out/t01"})
    assert answer.status_code == 404
    assert "out/t01/field" not in answer.text


def test_a_folder_page_refuses_a_missing_task_with_the_field_named(
    many: tuple[Server, int],
) -> None:
    server, run_id = many
    with logged_in(server) as web:
        answer = web.get(f"/runs/{run_id}/folder", params={"task": "nope", "path": "out"})
    assert answer.status_code == 404
    assert "task" in answer.text


def test_a_folder_downloads_as_one_zip_of_its_files(many: tuple[Server, int]) -> None:
    server, run_id = many
    with logged_in(server) as web:
        page = web.get(f"/runs/{run_id}").text
        link = re.search(
            r'href="(/api/v1/runs/\d+/outputs\.zip\?task=write&amp;folder=out/t07)"', page
        )
        assert link is not None
        answer = web.get(link.group(1).replace("&amp;", "&"))
        assert answer.status_code == 200
        disposition = answer.headers["content-disposition"]
        assert f'filename="run-{run_id}-write-out_t07.zip"' in disposition
        names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
        assert sorted(names) == [f"write/out/t07/field{n:03d}.dat" for n in range(50)]
        no_task = web.get(f"/api/v1/runs/{run_id}/outputs.zip", params={"task": "nope"})
        assert no_task.status_code == 404
        assert "nope" in no_task.json()["detail"]
        empty = web.get(
            f"/api/v1/runs/{run_id}/outputs.zip", params={"task": "write", "folder": "out/t99"}
        )
        assert empty.status_code == 404
        assert empty.json()["detail"].startswith("folder:")
        alone = web.get(f"/api/v1/runs/{run_id}/outputs.zip", params={"folder": "out/t07"})
        assert alone.status_code == 422
        assert "folder" in alone.json()["detail"]
    server.add_user("eve")
    with logged_in(server, "eve") as other:
        stolen = other.get(
            f"/api/v1/runs/{run_id}/outputs.zip", params={"task": "write", "folder": "out/t07"}
        )
    assert stolen.status_code == 404
