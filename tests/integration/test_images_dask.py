"""A realistic image through Dask and S3: a Debian root made by mmdebstrap holding only
libgfortran5 and a compiled Fortran program, registered into SeaweedFS and run on a real
Dask worker, first use (fetch, verify, unpack) and warm."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeModel
from tests.daskcluster import DaskCluster
from tests.integration.conftest import Server, _server
from tests.seaweed import Seaweed
from tests.unit.images.build import gfortran_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("bwrap", "umoci", "skopeo", "mmdebstrap", "gfortran")),
        reason="needs bubblewrap, umoci, skopeo, mmdebstrap and gfortran",
    ),
]

MANIFEST = """
simyard: 1
name: fortran-heat
version: "1.0"
tasks:
  heat:
    command: [./heat]
    outputs: [result.txt]
environment:
  image: oci-archive:env/image.tar
"""


@pytest.fixture
def dask_server(tmp_path: Path, seaweed: Seaweed) -> Iterator[Server]:
    root = tmp_path / "dask"
    root.mkdir()
    dask = DaskCluster(root)
    dask.start_scheduler()
    dask.start_worker("w1")
    dask.wait_for_workers(1)
    gen = _server(
        tmp_path,
        {
            "SIMYARD_EXECUTOR": "dask://" + dask.address.removeprefix("tcp://"),
            "SIMYARD_STORAGE_URL": f"s3://{seaweed.bucket}/{tmp_path.name}",
            "SIMYARD_S3_ENDPOINT_URL": seaweed.endpoint_url,
        },
    )
    yield next(gen)
    for _ in gen:
        pass
    dask.stop()


def test_a_fortran_model_runs_in_its_debian_image_on_dask_with_s3(
    dask_server: Server, make_model: MakeModel, seaweed: Seaweed, tmp_path: Path
) -> None:
    model = make_model(MANIFEST)
    gfortran_image(model / "env" / "image.tar")
    added = dask_server.cli("models", "add", model)
    assert added.returncode == 0, added.stderr
    with dask_server.http() as api:
        digest = api.get("/models/fortran-heat").json()["image_digest"]
        stored = [
            o["Key"]
            for o in seaweed.client()
            .list_objects_v2(Bucket=seaweed.bucket, Prefix=f"{tmp_path.name}/images/")
            .get("Contents", [])
        ]
        assert any(k.endswith(digest.removeprefix("sha256:")) for k in stored)
        for _first_use_then_warm in range(2):
            run_id = api.post("/runs", json={"model": "fortran-heat", "params": {}}).json()["id"]
            run = dask_server.wait_for_run(run_id, timeout=180)
            assert run["state"] == "succeeded", run
            assert run["tasks"][0]["image_digest"] == digest
            log = api.get(f"/runs/{run_id}/logs/heat").text
            # gfortran's runtime came from the image: the host's /usr (with its gfortran)
            # is not there, and the image's Env reached the program.
            assert "host gfortran visible: F" in log
            assert "greeting: hello from Debian" in log
            result = api.get(f"/runs/{run_id}/outputs/heat/result.txt")
            assert result.text.split() == ["temperature", "27.50"]
