"""The run page's pure parts: outputs grouped by folder, and the capture times beside a
live log."""

from __future__ import annotations

from pathlib import Path

from simyard.dispatch.livelogs import LiveLogs
from simyard.web.pages.run import MAX_FOLDERS, output_folders


def _file(path: str, size: int = 1, task: str = "t") -> dict[str, object]:
    return {"task": task, "kind": "output", "path": path, "size": size}


def test_outputs_group_by_task_and_folder_with_counts_and_sizes() -> None:
    outputs = [
        _file("out/a/1", 10),
        _file("out/a/2", 5),
        _file("top.txt", 7),
        _file("out/a/1", 3, "u"),
    ]
    folders = {(f.task, f.path): (len(f.files), f.size) for f in output_folders(outputs)}
    assert folders == {("t", "out/a"): (2, 15), ("t", ""): (1, 7), ("u", "out/a"): (1, 3)}


def test_too_many_folders_merge_into_their_parents() -> None:
    # 300 time-step folders of 2 files each (an OpenFOAM case): more than MAX_FOLDERS
    outputs = [_file(f"case/{step}/{name}") for step in range(300) for name in ("U", "p")]
    outputs += [_file("case/constant/polyMesh/points")]
    folders = output_folders(outputs)
    assert len(folders) <= MAX_FOLDERS
    assert [(f.path, len(f.files)) for f in folders] == [("case", 601)]


def test_capture_times_number_the_lines_of_each_batch(tmp_path: Path) -> None:
    live = LiveLogs(tmp_path, max_bytes=1 << 20)
    live.append(7, 1, ["one", "two"], at=100.0)
    live.append(7, 1, ["three"], at=101.5)
    found, offset = live.times(7, 1)
    assert found == [(1, 100.0), (3, 101.5)]
    assert live.path(7, 1).read_text() == "one\ntwo\nthree\n"  # the log holds only the lines
    # a server started afresh counts the lines already there
    LiveLogs(tmp_path, max_bytes=1 << 20).append(7, 1, ["four"], at=102.0)
    assert live.times(7, 1, offset) == ([(4, 102.0)], offset + len("4 102.000\n"))
