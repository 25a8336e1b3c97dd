"""The engine runs a task inside an image as it runs any task: exit codes, timeouts and
cancellation, limits and the network rule unchanged; nothing of the host is visible."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from simyard.engine.result import TaskOutcome
from simyard.engine.task import EngineOptions, TaskRequest, run_task
from simyard.images.cache import ImageCache, UnpackedImage
from simyard.images.resolve import resolve_image
from simyard.images.store import fetch_layout, store_image
from simyard.manifest.schema import Manifest
from simyard.storage.file import FileStore
from tests.unit.images.build import tiny_image

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bwrap", "umoci", "skopeo")),
    reason="needs bubblewrap, umoci and skopeo",
)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> UnpackedImage:
    tmp = tmp_path_factory.mktemp("image")
    tiny_image(tmp / "image.tar", programs=["/bin/dash", "/usr/bin/cat", "/usr/bin/ls"])
    resolved = resolve_image(
        "oci-archive:image.tar", model_dir=tmp, work=tmp / "work", where="e", max_layer_bytes=2**30
    )
    store = FileStore(tmp / "store")
    store_image(store, resolved.layout, resolved.manifest)
    cache = ImageCache(tmp / "cache", max_bytes=2**30)
    with cache.use(resolved.digest, lambda d: fetch_layout(store, resolved.digest, d)) as found:
        return found  # (kept: nothing evicts in this test)


def run(tmp_path: Path, image: UnpackedImage, task: dict[str, object], **kw: object) -> object:
    manifest = Manifest.model_validate(
        {"simyard": 1, "name": "m", "version": "1", "tasks": {"t": task}}
    )
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    request = TaskRequest(
        manifest=manifest,
        model_dir=model,
        task="t",
        params={},
        workdir=tmp_path / "work",
        log_path=tmp_path / "t.log",
        image=image,
    )
    return run_task(request, EngineOptions(sandbox="bwrap", kill_grace=0.5), **kw)  # type: ignore[arg-type]


def test_exit_codes_and_what_the_task_sees(tmp_path: Path, image: UnpackedImage) -> None:
    script = "ls /; ls /usr/bin; [ -e /etc/shadow ] || echo no-host-etc; exit 3"
    result = run(tmp_path, image, {"command": ["sh", "-c", script]})
    log = (tmp_path / "t.log").read_text()
    assert result.exit_code == 3  # type: ignore[attr-defined]
    assert "cat" in log
    assert "python3" not in log
    assert "no-host-etc" in log


def test_timeout_and_cancel_stop_a_task_in_an_image(tmp_path: Path, image: UnpackedImage) -> None:
    busy = ["sh", "-c", "while :; do :; done"]
    result = run(tmp_path / "a", image, {"command": busy, "timeout": "1s"})
    assert result.outcome is TaskOutcome.timed_out  # type: ignore[attr-defined]
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = run(tmp_path / "b", image, {"command": busy}, cancel=cancel)
    assert result.outcome is TaskOutcome.cancelled  # type: ignore[attr-defined]


def test_a_program_missing_from_the_image_is_named(tmp_path: Path, image: UnpackedImage) -> None:
    result = run(tmp_path, image, {"command": ["python3", "-c", "1"]})
    assert result.outcome is TaskOutcome.failed  # type: ignore[attr-defined]
    assert "not found on the image's PATH" in result.failure.reason  # type: ignore[attr-defined]


def test_an_exit_above_128_and_a_signal_are_told_apart(
    tmp_path: Path, image: UnpackedImage
) -> None:
    """The exit-status reporter works in an image too (the host's Perl, no module loaded)."""
    exited = run(tmp_path / "a", image, {"command": ["sh", "-c", "exit 201"]})
    assert exited.exit_code == 201  # type: ignore[attr-defined]
    assert "exited with code 201" in exited.failure.reason  # type: ignore[attr-defined]
    killed = run(tmp_path / "b", image, {"command": ["sh", "-c", "kill -9 $$"]})
    assert "killed by SIGKILL" in killed.failure.reason  # type: ignore[attr-defined]
