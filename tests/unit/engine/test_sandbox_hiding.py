"""Which host folders the sandbox can hide, and what it covers: decided from the folders'
real paths alone (no bubblewrap needed to ask)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simyard.engine.sandbox import _existing_hidden_dirs, hiding_problem
from simyard.errors import EngineError


def test_the_root_a_system_folder_and_pythons_own_cannot_be_hidden() -> None:
    assert "root folder" in (hiding_problem(Path("/")) or "")
    assert "/usr" in (hiding_problem(Path("/usr")) or "")
    prefix = Path(sys.prefix).resolve()
    # An ancestor of the Python installation would hide it, whatever the depth.
    assert str(prefix) in (hiding_problem(prefix.parent) or "")
    assert str(prefix) in (hiding_problem(prefix) or "")


def test_a_folder_that_only_shares_a_name_prefix_can_be_hidden(tmp_path: Path) -> None:
    # "/us" is not a parent of "/usr", nor "<prefix>-data" of "<prefix>": compared by
    # path component, not by string.
    assert hiding_problem(Path("/us")) is None
    assert hiding_problem(Path(str(Path(sys.prefix).resolve()) + "-data")) is None
    assert hiding_problem(tmp_path / "home") is None


def test_a_symlink_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    link = tmp_path / "looks-harmless"
    link.symlink_to("/usr")
    assert "/usr" in (hiding_problem(link) or "")
    with pytest.raises(EngineError, match="cannot hide"):
        _existing_hidden_dirs([link])


def test_only_the_outermost_existing_folders_outside_tmp_are_covered(tmp_path: Path) -> None:
    outer = Path("/var/tmp") / f"simyard-hide-test-{tmp_path.name}"
    inner = outer / "work"
    inner.mkdir(parents=True)
    sibling = Path(f"{outer}-sibling")  # shares outer's name as a prefix: not inside it
    sibling.mkdir()
    try:
        covered = _existing_hidden_dirs([inner, outer, sibling, tmp_path, outer / "missing"])
        # /tmp is the sandbox's own tmpfs already; a missing folder has nothing to cover.
        assert covered == sorted([str(outer), str(sibling)], key=Path)
    finally:
        inner.rmdir()
        outer.rmdir()
        sibling.rmdir()
