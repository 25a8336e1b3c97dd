"""Fixtures shared by every test suite."""

from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TypeVar

import pytest

from tests.ports import CLAIMS, claims_folder
from tests.seaweed import seaweed  # a session-wide S3 server for the suites that need one

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

MakeModel = Callable[..., Path]


T = TypeVar("T")


def run_apart(main: Callable[[], Coroutine[object, object, T]]) -> T:
    """``asyncio.run(main())`` in a thread of its own: an xdist worker's main thread may
    still be inside another event loop (Playwright's sync API, session-wide, runs one)."""
    done: list[T] = []
    thread = threading.Thread(target=lambda: done.append(asyncio.run(main())))
    thread.start()
    thread.join()
    assert done, "the coroutine raised (see the thread's traceback above)"
    return done[0]


def write_model(
    model_dir: Path, manifest: str, files: dict[str, str | bytes] | None = None
) -> Path:
    """Write a model folder from a manifest text (dedented) and extra files; return its path."""
    model_dir.mkdir()
    (model_dir / "simyard.yaml").write_text(textwrap.dedent(manifest))
    for rel, content in (files or {}).items():
        path = model_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return model_dir


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """Write model folders below the test's tmp_path (see :func:`write_model`)."""
    counter = iter(range(1000))

    def make(manifest: str, files: dict[str, str | bytes] | None = None) -> Path:
        return write_model(tmp_path / f"model{next(counter)}", manifest, files)

    return make


__all__ = ["MakeModel", "make_model", "seaweed", "write_model"]


def pytest_configure(config: pytest.Config) -> None:
    """The controlling process makes the folder of the run's claimed ports (tests/ports.py);
    its xdist workers, started after this, inherit it through the environment."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ.pop(CLAIMS, None)  # a folder of this run's own, never an inherited one
        claims_folder()


def pytest_unconfigure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ and os.environ.get(CLAIMS):
        shutil.rmtree(os.environ.pop(CLAIMS), ignore_errors=True)


# The files that start Dask clusters (and Slurm's Dask workers) run one after the other on
# one xdist worker: two at once missed their deadlines where each alone passed.
DASK_FILES = {"test_executors.py", "test_cluster_slurm.py", "test_dask.py", "test_images_dask.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each file's tests stay together on one xdist worker (``--dist loadgroup``), and the
    Dask files share one worker."""
    for item in items:
        name = item.path.name
        group = "dask" if name in DASK_FILES else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
