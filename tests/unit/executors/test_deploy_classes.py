"""Deploy classes: docs/scale-out.md's cluster files are imported and validated, never started.

The YAML blocks are read out of the document itself, so the documentation stays tested;
no Kubernetes cluster and no cloud account is reached (none is instantiated).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from simyard.errors import SimyardError
from simyard.executors.cluster import cluster_options
from simyard.executors.clusterfile import check_options, option_names, parse_cluster_file
from simyard.executors.deploy import ReplicaPool, SpecPool, pool_for

DOC = Path(__file__).resolve().parents[3] / "docs" / "scale-out.md"
TEXT = DOC.read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", TEXT, flags=re.M | re.S)


def doc_cluster_files() -> list[dict[str, Any]]:
    found = []
    for block in blocks("yaml"):
        for document in yaml.safe_load_all(block):  # Kubernetes manifests too: all must parse
            if isinstance(document, dict) and "class" in document:
                found.append(document)
    return found


def doc_classes() -> set[str]:
    """Every deploy class the examples name: cluster files' ``class`` and Python imports."""
    named = {str(f["class"]) for f in doc_cluster_files()}
    for block in blocks("python"):
        for module, names in re.findall(r"^from (dask\w*[\w.]*) import ([\w, ]+)$", block, re.M):
            named.update(f"{module}.{n.strip()}" for n in names.split(","))
    return named


CLUSTER_FILES = doc_cluster_files()


def test_the_doc_has_local_slurm_kubernetes_and_fargate_examples() -> None:
    assert {
        "dask_jobqueue.SLURMCluster",
        "dask_kubernetes.operator.KubeCluster",
        "dask_cloudprovider.aws.FargateCluster",
    } <= doc_classes()


@pytest.mark.parametrize("path", sorted(doc_classes()))
def test_every_class_the_doc_names_is_imported(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), name), type)


@pytest.mark.parametrize(
    "data",
    CLUSTER_FILES,
    ids=[f"{i}-{f['class'].rpartition('.')[2]}" for i, f in enumerate(CLUSTER_FILES)],
)
def test_every_cluster_file_in_the_doc_is_valid(data: dict[str, Any]) -> None:
    spec = parse_cluster_file(data, "docs/scale-out.md")
    cls = spec.deploy_class()  # checks the file's options
    assert pool_for(cls, spec.class_) in (SpecPool, ReplicaPool)
    check_options(cls, cluster_options(spec), spec.class_)  # and what simyard adds


@pytest.mark.parametrize(
    "path",
    [
        "distributed.LocalCluster",
        "dask_jobqueue.SLURMCluster",
        "dask_jobqueue.PBSCluster",
        "dask_kubernetes.operator.KubeCluster",
        "dask_cloudprovider.aws.FargateCluster",
        "dask_cloudprovider.aws.ECSCluster",
    ],
)
def test_an_unknown_option_is_refused_naming_it_and_the_class(path: str) -> None:
    spec = parse_cluster_file({"class": path, "max_workers": 1, "options": {"wallclock": "1h"}})
    with pytest.raises(SimyardError, match=rf"options\.wallclock: {re.escape(path)} takes no"):
        spec.deploy_class()


@pytest.mark.parametrize(
    ("path", "key", "near"),
    [
        ("dask_jobqueue.SLURMCluster", "waltime", "walltime"),
        ("dask_cloudprovider.aws.FargateCluster", "worker_memory", "worker_mem"),
        ("dask_kubernetes.operator.KubeCluster", "namespce", "namespace"),
    ],
)
def test_a_misspelt_option_names_the_near_one(path: str, key: str, near: str) -> None:
    with pytest.raises(SimyardError, match=f"did you mean '{near}'"):
        parse_cluster_file({"class": path, "max_workers": 1, "options": {key: 1}}).deploy_class()


def test_the_python_examples_call_their_deploy_class_with_options_it_takes() -> None:
    checked = 0
    for block in blocks("python"):
        imported = {}
        for module, names in re.findall(r"^from (dask\w*[\w.]*) import ([\w, ]+)$", block, re.M):
            for name in names.split(","):
                imported[name.strip()] = getattr(importlib.import_module(module), name.strip())
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                cls = imported.get(node.func.id)
                if cls is not None:
                    check_options(cls, {k.arg: None for k in node.keywords if k.arg}, node.func.id)
                    checked += 1
    assert checked >= 2  # section 4's Slurm and Fargate scripts


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("distributed.LocalCluster", "memory_limit"),  # LocalCluster -> Nanny -> Worker
        ("distributed.LocalCluster", "connection_limit"),  # ... -> Worker -> Server
        ("dask_jobqueue.SLURMCluster", "walltime"),  # SLURMCluster -> SLURMJob
        ("dask_jobqueue.SLURMCluster", "cores"),  # ... -> SLURMJob -> Job
        ("dask_cloudprovider.aws.FargateCluster", "worker_cpu"),  # -> ECSCluster
        ("dask_cloudprovider.aws.FargateCluster", "shutdown_on_close"),  # -> SpecCluster
        ("dask_kubernetes.operator.KubeCluster", "scheduler_sync_interval"),  # -> Cluster
    ],
)
def test_options_reaching_a_base_through_kwargs_are_taken(path: str, key: str) -> None:
    parse_cluster_file({"class": path, "max_workers": 1, "options": {key: 1}}).deploy_class()


def test_kwargs_reaching_object_take_nothing_and_unknown_ones_anything() -> None:
    from dask_jobqueue.core import JobQueueCluster

    class Forwards:
        def __init__(self, a: int = 0, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    assert option_names(Forwards) == {"a"}
    with pytest.raises(SimyardError, match=r"options\.b: Forwards takes no option 'b'"):
        check_options(Forwards, {"a": 1, "b": 1}, "Forwards")
    assert option_names(JobQueueCluster) is None  # no job class: its **job_kwargs go nowhere known
    check_options(JobQueueCluster, {"anything": 1}, "JobQueueCluster")


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("dask_kubernets.operator.KubeCluster", r"simyard\[kubernetes\]"),
        ("dask_cloudprovidr.aws.FargateCluster", r"simyard\[aws\]"),
        ("dask_jobqueu.SLURMCluster", r"simyard\[slurm\]"),
        ("dask_kubernetes.operatr.KubeCluster", r"simyard\[kubernetes\]"),
        ("dask_cloudprovider.aws.FargateClustr", "did you mean 'FargateCluster'"),
    ],
)
def test_a_misspelt_class_names_the_extra_or_the_near_class(path: str, shown: str) -> None:
    with pytest.raises(SimyardError, match=shown):
        parse_cluster_file({"class": path, "max_workers": 1}).deploy_class()


def test_each_class_is_driven_by_name_or_by_count_and_a_plain_cluster_is_refused() -> None:
    from dask_cloudprovider.aws import ECSCluster, FargateCluster
    from dask_jobqueue import SLURMCluster
    from dask_kubernetes.operator import KubeCluster
    from distributed import LocalCluster
    from distributed.deploy.cluster import Cluster

    for cls in (LocalCluster, SLURMCluster, FargateCluster, ECSCluster):
        assert pool_for(cls, cls.__name__) is SpecPool
    assert pool_for(KubeCluster, "dask_kubernetes.operator.KubeCluster") is ReplicaPool
    with pytest.raises(SimyardError, match=r"neither a distributed\.SpecCluster nor"):
        pool_for(Cluster, "distributed.deploy.cluster.Cluster")


def test_kubernetes_workers_start_at_zero_and_declare_the_shape() -> None:
    spec = parse_cluster_file({
        "class": "dask_kubernetes.operator.KubeCluster", "max_workers": 4,
        "options": {"image": "simyard:0.1.0", "worker_command": "dask worker"},
        "worker": {"cpus": 4, "memory": "14GB", "threads": 2},
    })  # fmt: skip
    options = cluster_options(spec)
    assert (options["name"], options["n_workers"], options["shutdown_on_close"]) == (
        "simyard", 0, True
    )  # fmt: skip
    assert options["worker_command"] == [
        "dask", "worker", "--nthreads", "2", "--resources", "cpus=4,memory=14000000000"
    ]  # fmt: skip


def test_fargate_workers_start_at_zero_and_declare_the_shape_of_their_task() -> None:
    spec = parse_cluster_file({
        "class": "dask_cloudprovider.aws.FargateCluster", "max_workers": 4,
        "options": {"worker_cpu": 2048, "worker_mem": 8192},
    })  # fmt: skip
    shape = spec.shape()
    assert (shape.cpus, shape.memory, shape.threads) == (2, 8 * 2**30, 2)
    options = cluster_options(spec)
    assert (options["n_workers"], options["worker_nthreads"]) == (0, 2)
    assert options["scheduler_timeout"] == "365 days"  # not its default 5 idle minutes
    assert options["worker_extra_args"] == ["--resources", "cpus=2,memory=8589934592"]
    bad = {"class": "dask_cloudprovider.aws.FargateCluster", "max_workers": 1,
           "options": {"worker_cpu": "two"}}  # fmt: skip
    with pytest.raises(SimyardError, match=r"options\.worker_cpu"):
        parse_cluster_file(bad).shape()
