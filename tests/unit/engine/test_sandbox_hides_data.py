"""The sandbox hides the data folder wherever it lies, and shows the run its own folder."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simyard.config import Settings
from simyard.engine import EngineOptions, TaskOutcome, TaskRequest, TaskResult, run_task
from simyard.engine.bundles import make_bundle
from simyard.engine.sandbox import find_bwrap
from simyard.engine.workorder import WorkOrder, execute_work_order
from simyard.errors import SimyardError
from simyard.manifest import load_manifest
from simyard.storage.file import FileStore
from tests.conftest import MakeModel

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed")

CANARY = "CANARY-7f3a9c"
# Where the data folder of a server may lie: under folders the sandbox shows the model.
PARENTS = {"opt": Path("/opt"), "usr-local": Path("/usr/local"), "python-prefix": Path(sys.prefix)}

MANIFEST = """\
simyard: 1
name: peek
version: "1"
tasks:
  run:
    command: [python3, peek.py]
"""
PEEK = """\
import os, pathlib, sys
data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else {data!r})
for rel in {secrets!r}:
    try:
        print("READ", rel, (data / rel).read_text())
    except OSError as exc:
        print("DENIED", rel, type(exc).__name__)
try:
    print("LISTED", sorted(os.listdir(data)))
except OSError as exc:
    print("DENIED listing", type(exc).__name__)
try:
    (data / "planted.txt").write_text("written by a model")
    print("PLANTED")
except OSError as exc:
    print("DENIED planting", type(exc).__name__)
pathlib.Path("own.txt").write_text("mine")
print("OWN", pathlib.Path("own.txt").read_text(), pathlib.Path("peek.py").exists())
"""
SECRETS = [
    "secret_key",
    "simyard.db",
    "storage/runs/7/inputs/other-users.csv",
    "live/7.log",
    "cache/bundles/abc/model.py",
    "work/run7/run.a1/work/result.csv",
    "db/simyard.db-wal",  # (where a test puts SIMYARD_DATABASE_URL)
]


@pytest.fixture(params=list(PARENTS), ids=list(PARENTS))
def data_folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A server's data folder with a canary in every kind of file it holds; removed after."""
    folder = PARENTS[request.param] / f"simyard-test-{uuid.uuid4().hex}"
    try:
        for rel in SECRETS:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(f"{CANARY} in {rel}")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def peek(make_model: MakeModel, data: Path, options: EngineOptions) -> TaskResult:
    """Run the peeking model with its working directory inside the data folder, as a server does."""
    model_dir = make_model(MANIFEST, {"peek.py": PEEK.format(data=str(data), secrets=SECRETS)})
    attempt = data / "work" / "run8" / "run.a1"
    request = TaskRequest(
        manifest=load_manifest(model_dir),
        model_dir=model_dir,
        task="run",
        params={},
        workdir=attempt / "work",
        log_path=attempt / "task.log",
    )
    return run_task(request, options)


def assert_hidden_but_own_folder_works(result: TaskResult, data: Path) -> None:
    log = result.log_path.read_text()
    assert result.outcome == TaskOutcome.succeeded, log
    assert CANARY not in log
    assert log.count("DENIED") == len(SECRETS) + 1  # every secret, and the planting
    assert "LISTED ['work']" in log  # only the path down to its own working directory
    assert not (data / "planted.txt").exists()
    assert "OWN mine True" in log
    assert (result.workdir / "own.txt").read_text() == "mine"


def test_model_cannot_read_the_data_folder_under_a_shared_folder(
    data_folder: Path, make_model: MakeModel
) -> None:
    options = Settings(home=data_folder, sandbox="bwrap", kill_grace=0.5).engine_options()
    result = peek(make_model, data_folder, options)
    assert_hidden_but_own_folder_works(result, data_folder)


def test_storage_and_database_set_elsewhere_are_hidden_too(
    data_folder: Path, make_model: MakeModel, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        storage_url=f"file://{data_folder / 'storage'}",
        database_url=f"sqlite:///{data_folder / 'db' / 'simyard.db'}",
        sandbox="bwrap",
        kill_grace=0.5,
    )
    options = settings.engine_options()
    assert set(options.hidden_dirs) >= {data_folder / "storage", data_folder / "db"}
    model_dir = make_model(MANIFEST, {"peek.py": PEEK.format(data=str(data_folder),
                                                               secrets=SECRETS)})  # fmt: skip
    attempt = tmp_path / "home" / "work" / "run8" / "run.a1"
    request = TaskRequest(
        manifest=load_manifest(model_dir), model_dir=model_dir, task="run", params={},
        workdir=attempt / "work", log_path=attempt / "task.log",
    )  # fmt: skip
    log = run_task(request, options).log_path.read_text()
    assert "DENIED storage/runs/7/inputs/other-users.csv" in log
    assert "DENIED db/simyard.db-wal" in log
    assert "READ secret_key" in log  # the rest of that folder holds no data of this server


def test_worker_hides_its_own_work_and_cache_folders(
    data_folder: Path, make_model: MakeModel
) -> None:
    """A Dask worker gets EngineOptions from the server, naming none of the worker's folders."""
    model_dir = make_model(MANIFEST, {"peek.py": PEEK.format(data=str(data_folder),
                                                               secrets=SECRETS)})  # fmt: skip
    store = FileStore(data_folder.parent / f"{data_folder.name}-store")
    try:
        bundle, content_hash = make_bundle(model_dir, store.root / "bundles")
        order = WorkOrder(
            run_id=8, task_run_id=1, task="run", attempt=1, manifest=load_manifest(model_dir),
            bundle_key=f"bundles/{bundle.name}", bundle_hash=content_hash, params={},
        )  # fmt: skip
        result = execute_work_order(
            order,
            store=store,
            work_root=data_folder / "work",
            cache_root=data_folder / "cache" / "bundles",
            options=EngineOptions(sandbox="bwrap", kill_grace=0.5),
        )
        assert result.log is not None
        log = (store.root / result.log.key).read_text()
    finally:
        shutil.rmtree(store.root, ignore_errors=True)
    assert result.outcome == TaskOutcome.succeeded, log
    for rel in ("cache/bundles/abc/model.py", "work/run7/run.a1/work/result.csv"):
        assert f"DENIED {rel}" in log
    assert "OWN mine True" in log


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"home": Path("/")}, "SIMYARD_HOME"),
        ({"home": Path("/usr")}, "SIMYARD_HOME"),
        ({"home": Path(sys.prefix)}, "SIMYARD_HOME"),
        ({"home": Path(sys.prefix).parent}, "SIMYARD_HOME"),
        ({"storage_url": "file:///opt"}, "SIMYARD_STORAGE_URL"),
        ({"database_url": "sqlite:////usr/simyard.db"}, "SIMYARD_DATABASE_URL"),
    ],
    ids=["root", "usr", "python-prefix", "above-python", "storage-opt", "sqlite-in-usr"],
)
def test_a_data_folder_that_cannot_be_hidden_is_refused_naming_its_setting(
    settings: dict[str, object], named: str, tmp_path: Path
) -> None:
    config = Settings(**{"home": tmp_path, **settings})  # type: ignore[arg-type]
    with pytest.raises(SimyardError, match=named):
        config.check_models_cannot_see_data()


def test_a_data_folder_of_its_own_is_accepted(tmp_path: Path) -> None:
    Settings(home=Path(sys.prefix) / "var" / "simyard").check_models_cannot_see_data()
    Settings(home=Path("/opt/simyard")).check_models_cannot_see_data()
    Settings(home=tmp_path).check_models_cannot_see_data()
