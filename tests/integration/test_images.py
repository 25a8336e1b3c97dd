"""Model environments end to end: a model whose tasks run in their own OCI images.

Images are built on this machine (tests/unit/images/build.py), no registry. One server
(SQLite, local executor, bubblewrap) registers an image model, runs it, and refuses a
hostile image by the entry; the run's JSON and page name the digest the task ran in.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import browser
from tests.unit.images.build import crafted_image, entry, layer_tar, tiny_image

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bwrap", "umoci", "skopeo")),
    reason="needs bubblewrap, umoci and skopeo",
)

RUN_SH = """#!/bin/sh
echo "greeting=$GREETING pwd=$(pwd)"
[ -e /usr/bin/python3 ] && echo "host python visible" || echo "no host python"
[ -e /etc/hostname-of-host ] || echo "image etc: $(cat /etc/marker)"
echo "ran in $IMAGE_NAME" > out.txt
"""

MANIFEST = """
simyard: 1
name: imaged
version: "1.0"
tasks:
  main:
    command: [./run.sh]
    outputs: [out.txt]
  other:
    needs: [main]
    command: [cat, out.txt, /etc/marker]
    image: oci:env/other
environment:
  image: docker-archive:env/image.tar
"""


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {"SIMYARD_SANDBOX": "bwrap"})


def test_a_model_runs_in_its_images_and_hostile_images_are_refused(
    image_server: Server, make_model: MakeModel, tmp_path: Path
) -> None:
    model = make_model(MANIFEST, {"README.md": "an image model\n"})
    (model / "env").mkdir()
    tiny_image(
        model / "env" / "image.tar",
        fmt="docker-archive",
        files={"/opt/app/run.sh": RUN_SH, "/etc/marker": "main-image\n"},
        env={"GREETING": "hello from the image", "IMAGE_NAME": "main"},
        workdir="/opt/app",
    )
    tiny_image(model / "env" / "other", fmt="oci", files={"/etc/marker": "other-image\n"})
    assert image_server.cli("models", "check", model).returncode == 0

    added = image_server.cli("models", "add", model)
    assert added.returncode == 0, added.stderr
    listed = image_server.cli("models", "list").stdout
    assert "imaged 1.0" in listed
    assert "image sha256:" in listed
    with image_server.http() as api:
        info = api.get("/models/imaged").json()
        digest = info["image_digest"]
        assert digest.startswith("sha256:")
        assert len(digest) == 71
        assert info["task_images"]["main"] == digest
        assert info["task_images"]["other"] not in (None, digest)
        # Registering the same folder again is a no-op; the image is not stored twice.
        assert image_server.cli("models", "add", model).returncode == 0
        blobs = list((image_server.home / "storage" / "images").rglob("*"))

        run_id = api.post("/runs", json={"model": "imaged", "params": {}}).json()["id"]
        run = image_server.wait_for_run(run_id, timeout=120)
        assert run["state"] == "succeeded", run
        assert run["image_digest"] == digest
        tasks = {t["name"]: t for t in run["tasks"]}
        assert tasks["main"]["image_digest"] == digest
        assert tasks["other"]["image_digest"] == info["task_images"]["other"]
        main_log = api.get(f"/runs/{run_id}/logs/main").text
        assert "greeting=hello from the image" in main_log
        assert "no host python" in main_log  # the host's /usr is not there
        assert "image etc: main-image" in main_log
        assert "pwd=/" in main_log
        assert "/work" in main_log
        other_log = api.get(f"/runs/{run_id}/logs/other").text
        assert "ran in main" in other_log
        assert "other-image" in other_log
    assert blobs
    assert all(p.is_file() or p.is_dir() for p in blobs)
    with browser(image_server) as web:
        assert digest in web.get(f"/runs/{run_id}").text
        model_page = web.get("/models/imaged").text
        assert digest in model_page
        assert "<code>other</code> runs in its own image" in model_page

    # A hostile image is refused at registration, naming the entry; nothing is registered.
    hostile = make_model(MANIFEST.replace("imaged", "hostile"))
    (hostile / "env").mkdir()
    crafted_image(hostile / "env" / "other", layer_tar([entry("bin/sh")]))
    layout = crafted_image(
        tmp_path / "evil", layer_tar([entry("etc/ok"), entry("usr/bin/su", mode=0o4755)])
    )
    shutil.copytree(layout, hostile / "env" / "layout")
    hostile_manifest = (hostile / "simyard.yaml").read_text()
    (hostile / "simyard.yaml").write_text(
        hostile_manifest.replace("docker-archive:env/image.tar", "oci:env/layout")
    )
    refused = image_server.cli("models", "add", hostile)
    assert refused.returncode != 0
    said = refused.stderr + refused.stdout
    assert "environment.image" in said
    assert "'usr/bin/su'" in said
    assert "setuid" in said
    with image_server.http() as api:
        assert api.get("/models/hostile").status_code == 404


def test_models_test_runs_the_model_in_its_image(make_model: MakeModel, tmp_path: Path) -> None:
    """``simyard models test`` checks and unpacks the image on this machine, as a worker."""
    import os
    import subprocess
    import sys

    model = make_model(MANIFEST.replace("imaged", "local"))
    (model / "env").mkdir()
    tiny_image(
        model / "env" / "image.tar",
        fmt="docker-archive",
        files={"/opt/app/run.sh": RUN_SH, "/etc/marker": "main-image\n"},
        env={"GREETING": "hi", "IMAGE_NAME": "main"},
        workdir="/opt/app",
    )
    tiny_image(model / "env" / "other", fmt="oci", files={"/etc/marker": "other-image\n"})
    env = {**os.environ, "SIMYARD_HOME": str(tmp_path / "home"), "SIMYARD_SANDBOX": "bwrap"}
    done = subprocess.run(
        [sys.executable, "-m", "simyard", "models", "test", str(model), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "o" / "main" / "out.txt").read_text() == "ran in main\n"
