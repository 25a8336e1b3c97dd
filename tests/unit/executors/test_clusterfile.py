"""The cluster file: a bad one is refused at start naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simyard.errors import SimyardError
from simyard.executors.clusterfile import load_cluster_file, parse_cluster_file


def test_a_full_file_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "class: dask_jobqueue.SLURMCluster\n"
        "options: {cores: 2, memory: 4GiB, queue: debug}\n"
        "max_workers: 8\nprice_per_worker_hour: 0.05\n"
    )
    cluster = load_cluster_file(path)
    assert cluster.class_ == "dask_jobqueue.SLURMCluster"
    assert (cluster.min_workers, cluster.idle_timeout) == (0, 600.0)
    shape = cluster.shape()
    assert (shape.cpus, shape.memory, shape.threads) == (2, 4 * 2**30, 2)


def test_idle_timeout_takes_a_duration() -> None:
    cluster = parse_cluster_file({"class": "distributed.LocalCluster", "max_workers": 2,
                                  "idle_timeout": "30s"})  # fmt: skip
    assert cluster.idle_timeout == 30.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_workers": 2}, "class"),
        ({"class": "LocalCluster", "max_workers": 2}, "class"),
        ({"class": "distributed.LocalCluster"}, "max_workers"),
        ({"class": "distributed.LocalCluster", "max_workers": 0}, "max_workers"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "idle_timeout": "soon"},
         "idle_timeout"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "min_workers": 3},
         "min_workers"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "price_per_worker_hour": -1},
         "price_per_worker_hour"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "max_wrokers": 3},
         "max_wrokers"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "options": [1]}, "options"),
        ({"class": "distributed.LocalCluster", "max_workers": 2, "worker": {"cpus": 0}},
         "worker.cpus"),
    ],
)  # fmt: skip
def test_a_bad_file_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(SimyardError, match=key):
        parse_cluster_file(data)


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SimyardError, match="SIMYARD_CLUSTER_FILE"):
        load_cluster_file(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("class: [\n")
    with pytest.raises(SimyardError, match="not valid YAML"):
        load_cluster_file(tmp_path / "bad.yaml")


def test_a_class_that_cannot_be_imported_names_the_extra() -> None:
    cluster = parse_cluster_file({"class": "dask_nosuch.Cluster", "max_workers": 1})
    with pytest.raises(SimyardError, match="dask_nosuch"):
        cluster.cluster_class()
    assert (
        parse_cluster_file({"class": "dask_jobqueue.SLURMCluster", "max_workers": 1})
        .cluster_class()
        .__name__
        == "SLURMCluster"
    )


def test_a_class_simyard_cannot_retire_workers_of_is_refused() -> None:
    from distributed.deploy.cluster import Cluster

    from simyard.executors.cluster import check_deploy_class

    with pytest.raises(SimyardError, match=r"neither a distributed\.SpecCluster"):
        check_deploy_class(Cluster, "distributed.deploy.cluster.Cluster")


def test_workers_declare_the_shape_and_start_at_zero_on_loopback() -> None:
    from simyard.executors.cluster import cluster_options

    extra = ["--lifetime", "1h"]
    slurm = parse_cluster_file({"class": "dask_jobqueue.SLURMCluster", "max_workers": 2,
                                "options": {"cores": 2, "memory": "1GiB",
                                            "worker_extra_args": extra}})  # fmt: skip
    options = cluster_options(slurm)
    assert options["n_workers"] == 0
    assert options["scheduler_options"]["host"] == "127.0.0.1"
    assert options["worker_extra_args"] == [
        "--lifetime", "1h", "--resources", "cpus=2,memory=1073741824"
    ]  # fmt: skip
    local = cluster_options(parse_cluster_file({"class": "distributed.LocalCluster",
                                                "max_workers": 2}))  # fmt: skip
    assert (local["n_workers"], local["host"], local["resources"]) == (0, "127.0.0.1", {"cpus": 1})
