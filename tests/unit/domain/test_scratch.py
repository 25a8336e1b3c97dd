"""A request's scratch folder (uploads, fetched inputs): made for its first file only, named by
the server, removed."""

from __future__ import annotations

from pathlib import Path

from simyard.domain.submission import Scratch


def folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_a_request_with_no_file_makes_no_folder(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    scratch.remove()

    assert folders(tmp_path) == []


def test_files_share_one_server_named_folder_that_is_removed_with_them(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    first, second = scratch.file("input-0"), scratch.file("side-1")
    first.write_bytes(b"a")
    second.write_bytes(b"b")

    assert first.parent == second.parent
    assert first.parent.parent == tmp_path.resolve()
    assert folders(tmp_path) == [first.parent.name]
    assert first.parent.name.startswith("simyard-")

    scratch.remove()

    assert folders(tmp_path) == []
